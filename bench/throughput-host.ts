/**
 * Host gather/scatter throughput of the native addon for a real model shape
 * (default Llama-3.1-8B: 32 layers, 8 KV heads, head dim 128, bf16, block 16,
 * 256-token chunks = 32 MiB) in two of vLLM's KV layouts:
 *   per_layer    flash-attn, one shm file per layer: a block is 2 pieces per layer
 *                (64 pieces of 32 KiB for Llama-3.1-8B)
 *   cross_layer  vLLM's cross-layer blocks (prefer_cross_layer_blocks): one shm
 *                file (num_blocks, layers, 2, block, heads, head_dim), a block is
 *                one 2 MiB piece across every layer
 * beside plain memcpy of the same bytes with the same thread count
 * (worker_threads doing Buffer.copy between SharedArrayBuffers) and beside
 * the addon's own copy loop over contiguous bytes (its stores bypass the
 * cache, native/src/stream-copy.h, which memcpy's do not at these sizes
 * here, so the layouts can beat memcpy; this one they cannot) in the same
 * run: rounds interleave both layouts and the reference, and each reported
 * ratio is the median of per-round ratios, so it means something on a noisy
 * machine. The top-level gather/scatter figures are the per_layer row.
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
  reference: { what: string; memcpy_gbps: number; single_thread_buffer_copy_gbps: number; stream_copy_what: string; stream_copy_gather_gbps: number; stream_copy_scatter_gbps: number };
  ratio: { gather: number; scatter: number };
  ratio_to_stream_copy: { gather: number; scatter: number };
  layouts: HostLayoutRow[];
}

export interface HostLayoutRow {
  layout: 'per_layer' | 'cross_layer';
  pieces_per_block: number;
  piece_bytes: number;
  gather_gbps: number;
  scatter_gbps: number;
  ratio: { gather: number; scatter: number };
  ratio_to_stream_copy: { gather: number; scatter: number };
}

interface BenchLayout {
  name: HostLayoutRow['layout'];
  files: string[];
  spec: KvLayoutSpec;
  piecesPerBlock: number;
  pieceBytes: number;
}

/** The shm files and the layout RegisterKv gets for one of the two layouts. */
function benchLayout(name: HostLayoutRow['layout'], s: { layers: number; numBlocks: number; blockBytes: number; blockSize: number; chunkTokens: number }): BenchLayout {
  const { layers, numBlocks, blockBytes, blockSize, chunkTokens } = s;
  if (name === 'per_layer') {
    const layerBytes = 2 * numBlocks * blockBytes;
    const files = Array.from({ length: layers }, (_, l) => `/dev/shm/kvtier-bench-${process.pid}-${l}`);
    return {
      name, files, piecesPerBlock: 2 * layers, pieceBytes: blockBytes,
      spec: {
        regions: files.map((f, l) => ({ regionId: l, sizeBytes: layerBytes, shmPath: f })),
        planes: files.flatMap((_, l) => [0, 1].map((kv) => ({ layer: l, regionId: l, offset: kv * numBlocks * blockBytes, blockStride: blockBytes, blockBytes }))),
        numBlocks, blockSize, chunkTokens,
      },
    };
  }
  // One plane, as the vLLM connector registers the cross-layer tensor (kv-xlLKNHD-x1).
  const crossBytes = 2 * layers * blockBytes;
  const file = `/dev/shm/kvtier-bench-${process.pid}-xl`;
  return {
    name, files: [file], piecesPerBlock: 1, pieceBytes: crossBytes,
    spec: {
      regions: [{ regionId: 0, sizeBytes: numBlocks * crossBytes, shmPath: file }],
      planes: [{ layer: 0, regionId: 0, offset: 0, blockStride: crossBytes, blockBytes: crossBytes }],
      numBlocks, blockSize, chunkTokens,
    },
  };
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
  const layouts = (['per_layer', 'cross_layer'] as const).map((name) => benchLayout(name, { layers, numBlocks, blockBytes, blockSize, chunkTokens }));
  const files = layouts.flatMap((l) => l.files);
  try {
    for (const l of layouts) {
      for (const f of l.files) {
        writeFileSync(f, '');
        truncateSync(f, l.spec.regions[0].sizeBytes);
      }
    }
    const kvs = layouts.map((l) => new RegisteredKv(l.spec));
    const chunkBytes = kvs[0].chunkBytes;
    if (kvs.some((kv) => kv.chunkBytes !== chunkBytes)) throw new Error(`expected one chunk size for both layouts, got ${kvs.map((kv) => kv.chunkBytes).join(', ')}`);
    const pool = new NativePool(chunkBytes * perBatch);
    const slabs = Array.from({ length: perBatch }, () => pool.allocate(chunkBytes)!);
    const batchBytes = chunkBytes * perBatch;
    const ids = (): Uint32Array[] => {
      const order = shuffled(numBlocks);
      return slabs.map((_, c) => order.subarray(c * blocksPerChunk, (c + 1) * blocksPerChunk));
    };
    // Fill every block through the mapping, as a worker writing its KV
    // would; this also warms the mappings like a running daemon's.
    slabs.forEach((s, c) => s.buf.fill(c + 1));
    for (const kv of kvs) {
      for (let first = 0; first < numBlocks; first += blocksPerChunk * perBatch) {
        await kv.scatter(slabs.map((s, c) => ({ blockIds: Uint32Array.from({ length: blocksPerChunk }, (_, i) => first + c * blocksPerChunk + i), src: s.buf })));
      }
    }
    const threads = nativeInfo().copyThreads;
    const memcpy = memcpyWorkers(batchBytes, threads);
    const a = Buffer.alloc(batchBytes, 3);
    const b = Buffer.alloc(batchBytes);
    // Interleaved rounds: a neighbour's load hits both layouts and the reference alike.
    const g = kvs.map((): number[] => []), sc = kvs.map((): number[] => []);
    const rg = kvs.map((): number[] => []), rs = kvs.map((): number[] => []);
    const m: number[] = [], one: number[] = [], cg: number[] = [], cs: number[] = [];
    const sg = kvs.map((): number[] => []), ss = kvs.map((): number[] => []);
    // The cross-layer file's blocks in order are contiguous bytes: the same copy loop with nothing to scatter.
    const cross = kvs[layouts.findIndex((l) => l.name === 'cross_layer')];
    const inOrder = slabs.map((_, c) => Uint32Array.from({ length: blocksPerChunk }, (_, i) => c * blocksPerChunk + i));
    for (let r = 0; r < rounds; r++) {
      // Alternate which layout goes first, so neither always follows the reference's cache state.
      const turn = r % 2 === 0 ? [...kvs.entries()] : [...kvs.entries()].reverse();
      for (const [i, kv] of turn) {
        g[i].push(gbps(batchBytes * iters, await timeIt(iters, () => kv.gather(ids().map((blockIds, c) => ({ blockIds, dst: slabs[c].buf }))))));
        sc[i].push(gbps(batchBytes * iters, await timeIt(iters, () => kv.scatter(ids().map((blockIds, c) => ({ blockIds, src: slabs[c].buf }))))));
      }
      m.push(gbps(batchBytes * iters, await timeIt(iters, memcpy.round)));
      one.push(gbps(batchBytes * iters, await timeIt(iters, async () => { a.copy(b); })));
      cg.push(gbps(batchBytes * iters, await timeIt(iters, () => cross.gather(inOrder.map((blockIds, c) => ({ blockIds, dst: slabs[c].buf }))))));
      cs.push(gbps(batchBytes * iters, await timeIt(iters, () => cross.scatter(inOrder.map((blockIds, c) => ({ blockIds, src: slabs[c].buf }))))));
      kvs.forEach((_, i) => {
        rg[i].push(g[i][r] / m[r]);
        rs[i].push(sc[i][r] / m[r]);
        sg[i].push(g[i][r] / cg[r]);
        ss[i].push(sc[i][r] / cs[r]);
      });
    }
    await memcpy.close();
    const info = pool.info();
    slabs.forEach((s) => s.release());
    pool.close();
    await Promise.all(kvs.map((kv) => kv.close()));
    const ratio = (xs: number[]): number => Math.round(median(xs) * 100) / 100;
    const rows: HostLayoutRow[] = layouts.map((l, i) => ({
      layout: l.name, pieces_per_block: l.piecesPerBlock, piece_bytes: l.pieceBytes,
      gather_gbps: median(g[i]), scatter_gbps: median(sc[i]), ratio: { gather: ratio(rg[i]), scatter: ratio(rs[i]) },
      ratio_to_stream_copy: { gather: ratio(sg[i]), scatter: ratio(ss[i]) },
    }));
    return {
      bench: 'throughput',
      tier: 'host',
      shape: `${layers} layers x ${heads} kv heads x ${headDim} dim x ${elem} B, block ${blockSize}, chunk ${chunkTokens} tokens, flash-attn per-layer and cross-layer layouts, shuffled block ids`,
      chunk_bytes: chunkBytes,
      chunks_per_batch: perBatch,
      iters,
      rounds,
      copy_threads: threads,
      pool: { pinned: info.pinned, huge_pages: info.hugePages },
      gather_gbps: rows[0].gather_gbps,
      scatter_gbps: rows[0].scatter_gbps,
      reference: { what: `memcpy of ${batchBytes} contiguous bytes on ${threads} worker threads (Buffer.copy)`, memcpy_gbps: median(m), single_thread_buffer_copy_gbps: median(one),
        stream_copy_what: `the addon's gather and scatter of ${batchBytes} contiguous bytes (the cross-layer file's blocks in order, pieces of up to 1 MiB) on ${threads} copy threads`, stream_copy_gather_gbps: median(cg), stream_copy_scatter_gbps: median(cs) },
      ratio: rows[0].ratio,
      ratio_to_stream_copy: rows[0].ratio_to_stream_copy,
      layouts: rows,
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
      ...Object.fromEntries(r.layouts.flatMap((l) => [
        [`gather ${l.layout}`, { gbps: l.gather_gbps, ratio_to_memcpy: l.ratio.gather }],
        [`scatter ${l.layout}`, { gbps: l.scatter_gbps, ratio_to_memcpy: l.ratio.scatter }],
      ])),
      memcpy: { gbps: r.reference.memcpy_gbps, ratio_to_memcpy: 1 },
      'addon gather, contiguous': { gbps: r.reference.stream_copy_gather_gbps, ratio_to_memcpy: '' },
      'addon scatter, contiguous': { gbps: r.reference.stream_copy_scatter_gbps, ratio_to_memcpy: '' },
      'buffer.copy (1 thread)': { gbps: r.reference.single_thread_buffer_copy_gbps, ratio_to_memcpy: '' },
    });
  }
}
