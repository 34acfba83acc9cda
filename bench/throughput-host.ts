/**
 * Host gather/scatter throughput of the native addon for a real model shape
 * (default Llama-3.1-8B: 32 layers, 8 KV heads, head dim 128, bf16, block 16,
 * 256-token chunks = 32 MiB, vLLM flash-attn layout, one shm file per layer),
 * beside plain memcpy of the same bytes with the same thread count
 * (worker_threads doing Buffer.copy between SharedArrayBuffers) in the same
 * run: rounds interleave copy and reference, and the reported ratio is the
 * median of per-round ratios, so it means something on a noisy machine.
 *
 *   node dist/bench/throughput-host.js [--chunks-per-batch 4] [--iters 10] [--rounds 5] [--num-blocks 512] [--json]
 */
import { rmSync, truncateSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

import { NativePool, RegisteredKv, nativeInfo, type KvLayoutSpec } from '../native/index.js';
import { gbps, median, resolveShape, shuffled, type KvBenchShape } from './stats.js';

export type HostThroughputOptions = KvBenchShape;

export interface HostThroughputResult {
  bench: 'throughput';
  tier: 'host';
  shape: string;
  chunk_bytes: number;
  chunks_per_batch: number;
  iters: number;
  rounds: number;
  copy_threads: number;
  pool: { pinned: boolean; huge_pages: boolean };
  gather_gbps: number;
  scatter_gbps: number;
  reference: { what: string; memcpy_gbps: number; single_thread_buffer_copy_gbps: number };
  ratio: { gather: number; scatter: number };
}

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const src = Buffer.from(workerData.src, workerData.off, workerData.len);
const dst = Buffer.from(workerData.dst, workerData.off, workerData.len);
parentPort.on('message', () => { src.copy(dst); parentPort.postMessage(0); });
`;



async function timeIt(iters: number, run: () => Promise<void>): Promise<number> {
  await run();
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) await run();
  return performance.now() - t0;
}

/** T worker threads, each copying its slice of `bytes` between two SharedArrayBuffers per round. */
function memcpyWorkers(bytes: number, threads: number): { round: () => Promise<void>; close: () => Promise<void> } {
  const src = new SharedArrayBuffer(bytes);
  const dst = new SharedArrayBuffer(bytes);
  Buffer.from(src).fill(7);
  const per = Math.ceil(bytes / threads / 4096) * 4096;
  const workers = Array.from({ length: threads }, (_, t) => {
    const off = Math.min(t * per, bytes);
    return new Worker(WORKER, { eval: true, workerData: { src, dst, off, len: Math.min(per, bytes - off) } });
  });
  return {
    round: () =>
      Promise.all(workers.map((w) => new Promise<void>((resolve) => { w.once('message', () => resolve()); w.postMessage(0); }))).then(() => undefined),
    close: () => Promise.all(workers.map((w) => w.terminate())).then(() => undefined),
  };
}


export async function runHostThroughput(opts: HostThroughputOptions = {}): Promise<HostThroughputResult> {
  const { layers, kvHeads: heads, headDim, elemBytes: elem, blockSize, chunkTokens, numBlocks, chunksPerBatch: perBatch, iters, rounds, blocksPerChunk } = resolveShape(opts);

  const blockBytes = blockSize * heads * headDim * elem;
  const layerBytes = 2 * numBlocks * blockBytes;
  const files = Array.from({ length: layers }, (_, l) => `/dev/shm/kvtier-bench-${process.pid}-${l}`);
  const spec: KvLayoutSpec = {
    regions: files.map((f, l) => ({ regionId: l, sizeBytes: layerBytes, shmPath: f })),
    planes: files.flatMap((_, l) => [0, 1].map((kv) => ({ layer: l, regionId: l, offset: kv * numBlocks * blockBytes, blockStride: blockBytes, blockBytes }))),
    numBlocks,
    blockSize,
    chunkTokens,
  };
  try {
    files.forEach((f) => {
      writeFileSync(f, '');
      truncateSync(f, layerBytes);
    });
    const kv = new RegisteredKv(spec);
    const pool = new NativePool(kv.chunkBytes * perBatch);
    const slabs = Array.from({ length: perBatch }, () => pool.allocate(kv.chunkBytes)!);
    const batchBytes = kv.chunkBytes * perBatch;
    const ids = (): Uint32Array[] => {
      const order = shuffled(numBlocks);
      return slabs.map((_, c) => order.subarray(c * blocksPerChunk, (c + 1) * blocksPerChunk));
    };
    // Fill every block through the mapping, as a worker writing its KV
    // would; this also warms the mappings like a running daemon's.
    slabs.forEach((s, c) => s.buf.fill(c + 1));
    for (let first = 0; first < numBlocks; first += blocksPerChunk * perBatch) {
      await kv.scatter(slabs.map((s, c) => ({ blockIds: Uint32Array.from({ length: blocksPerChunk }, (_, i) => first + c * blocksPerChunk + i), src: s.buf })));
    }
    const threads = nativeInfo().copyThreads;
    const memcpy = memcpyWorkers(batchBytes, threads);
    const a = Buffer.alloc(batchBytes, 3);
    const b = Buffer.alloc(batchBytes);
    // Interleaved rounds: a neighbour's load hits the copy and its reference alike.
    const g: number[] = [], sc: number[] = [], m: number[] = [], one: number[] = [], rg: number[] = [], rs: number[] = [];
    for (let r = 0; r < rounds; r++) {
      g.push(gbps(batchBytes * iters, await timeIt(iters, () => kv.gather(ids().map((blockIds, c) => ({ blockIds, dst: slabs[c].buf }))))));
      sc.push(gbps(batchBytes * iters, await timeIt(iters, () => kv.scatter(ids().map((blockIds, c) => ({ blockIds, src: slabs[c].buf }))))));
      m.push(gbps(batchBytes * iters, await timeIt(iters, memcpy.round)));
      one.push(gbps(batchBytes * iters, await timeIt(iters, async () => { a.copy(b); })));
      rg.push(g[r] / m[r]);
      rs.push(sc[r] / m[r]);
    }
    await memcpy.close();
    const info = pool.info();
    slabs.forEach((s) => s.release());
    pool.close();
    await kv.close();
    const gather = median(g);
    const scatter = median(sc);
    return {
      bench: 'throughput',
      tier: 'host',
      shape: `${layers} layers x ${heads} kv heads x ${headDim} dim x ${elem} B, block ${blockSize}, chunk ${chunkTokens} tokens, flash-attn layout, shuffled block ids`,
      chunk_bytes: kv.chunkBytes,
      chunks_per_batch: perBatch,
      iters,
      rounds,
      copy_threads: threads,
      pool: { pinned: info.pinned, huge_pages: info.hugePages },
      gather_gbps: gather,
      scatter_gbps: scatter,
      reference: { what: `memcpy of ${batchBytes} contiguous bytes on ${threads} worker threads (Buffer.copy)`, memcpy_gbps: median(m), single_thread_buffer_copy_gbps: median(one) },
      ratio: { gather: Math.round(median(rg) * 100) / 100, scatter: Math.round(median(rs) * 100) / 100 },
    };
  } finally {
    files.forEach((f) => rmSync(f, { force: true }));
  }
}

function flag(args: string[], name: string): number | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : undefined;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const r = await runHostThroughput({ chunksPerBatch: flag(args, '--chunks-per-batch'), iters: flag(args, '--iters'), rounds: flag(args, '--rounds'), numBlocks: flag(args, '--num-blocks') });
  if (args.includes('--json')) {
    console.log(JSON.stringify(r));
  } else {
    console.log(`host throughput, ${r.shape}, chunk ${r.chunk_bytes >> 20} MiB x ${r.chunks_per_batch} per batch, ${r.copy_threads} copy threads`);
    console.table({
      gather: { gbps: r.gather_gbps, ratio_to_memcpy: r.ratio.gather },
      scatter: { gbps: r.scatter_gbps, ratio_to_memcpy: r.ratio.scatter },
      memcpy: { gbps: r.reference.memcpy_gbps, ratio_to_memcpy: 1 },
      'buffer.copy (1 thread)': { gbps: r.reference.single_thread_buffer_copy_gbps, ratio_to_memcpy: '' },
    });
  }
}
