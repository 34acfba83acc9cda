/**
 * GPU <-> pinned host throughput of the native addon, the path a vLLM worker
 * on a GPU takes: a child process (bench/cuda-worker.mjs) owns the KV cache in
 * device memory, as the worker does, and hands over its CUDA IPC handle; this
 * process registers it and gathers shuffled blocks of every layer into
 * cudaHostAlloc'd pool slabs (store), then scatters them back (retrieve).
 * The reference is plain cudaMemcpyAsync of the same number of contiguous
 * bytes between device memory and a pinned pool slab, queued back to back and
 * timed with CUDA events in the same run; the headline figures keep two
 * batches in flight to match, and the serial ones (one await per batch) are
 * reported beside them with the GPU-only time. Bytes are checked before anything is timed: gathered slabs
 * against the pattern the worker uploaded, and a scatter read back through a
 * second gather.
 *
 *   node dist/bench/throughput-cuda.js [--mode staged|kernel] [--json]
 */
import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { NativePool, RegisteredKv, addonPath, cudaCopyGpuMs, nativeInfo, setCudaCopyMode, type CudaCopyMode, type KvLayoutSpec } from '../native/index.js';
import { gbps, median, resolveShape, shuffled, type KvBenchShape } from './stats.js';

export interface CudaThroughputOptions extends KvBenchShape {
  mode?: CudaCopyMode;
}

export interface CudaThroughputResult {
  bench: 'throughput';
  tier: 'host';
  source: 'cuda';
  shape: string;
  cuda_copy: CudaCopyMode;
  chunk_bytes: number;
  chunks_per_batch: number;
  iters: number;
  rounds: number;
  verified: boolean;
  /** Two batches in flight, as concurrent requests reach the daemon; like the reference, which queues its copies back to back. */
  gather_gbps: number;
  scatter_gbps: number;
  /** One batch at a time: each pays its whole host round trip (plan, hand-off, completion). */
  serial: { gather_gbps: number; scatter_gbps: number; js_submit_ms_per_batch: number };
  /** Bytes over GPU time alone (CUDA events around each serial batch). */
  gpu_only: { gather_gbps: number; scatter_gbps: number };
  reference: { what: string; d2h_gbps: number; h2d_gbps: number };
  ratio: { gather: number; scatter: number };
}

interface Testing {
  alloc(bytes: number, device: number): { handle: Buffer; ptr: bigint };
  timeMemcpy(ptr: bigint, host: Buffer, toDevice: boolean, iters: number): number;
  free(ptr: bigint): void;
}

const here = dirname(fileURLToPath(import.meta.url));




/**
 * Wall-clock ms, GPU ms and JS-thread submit ms of `iters` batches after one
 * warm-up, keeping up to `inflight` batches outstanding (batch i uses slab
 * set i % inflight).
 */
async function timeIt(iters: number, inflight: number, run: (set: number) => Promise<void>): Promise<{ wall: number; gpu: number; submit: number }> {
  await run(0);
  let submit = 0;
  const g0 = cudaCopyGpuMs();
  const t0 = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < iters; i++) {
    if (pending.length === inflight) await pending.shift();
    const s0 = performance.now();
    pending.push(run(i % inflight));
    submit += performance.now() - s0;
  }
  await Promise.all(pending);
  return { wall: performance.now() - t0, gpu: cudaCopyGpuMs() - g0, submit };
}

export async function runCudaThroughput(opts: CudaThroughputOptions = {}): Promise<CudaThroughputResult> {
  const info = nativeInfo();
  if (info.backend !== 'cuda') throw new Error(`the CUDA throughput bench needs a CUDA device: ${info.reason}`);
  const { layers, kvHeads: heads, headDim, elemBytes: elem, blockSize, chunkTokens, numBlocks, chunksPerBatch: perBatch, iters, rounds, blocksPerChunk } = resolveShape(opts);
  const mode = opts.mode ?? (info.cudaCopy as CudaCopyMode);
  if (!setCudaCopyMode(mode)) throw new Error(`expected staged or kernel for the CUDA copy mode, got ${mode}`);

  // All layers in one device allocation, each layer a vLLM flash-attn tensor
  // (2, num_blocks, block, heads, dim): plane (l, kv) starts at (2l+kv) planes in.
  const blockBytes = blockSize * heads * headDim * elem;
  const planeBytes = numBlocks * blockBytes;
  const total = layers * 2 * planeBytes;
  const pattern = randomFillSync(Buffer.allocUnsafe(total));
  const patternFile = `/dev/shm/kvtier-bench-cuda-${process.pid}`;
  writeFileSync(patternFile, pattern);
  const child = spawn(process.execPath, [join(here, '..', '..', 'bench', 'cuda-worker.mjs'), addonPath(), patternFile], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const testing = (createRequire(import.meta.url)(addonPath()) as { __testing: Testing }).__testing;
  let refPtr: bigint | undefined;
  try {
    const hello = await lines.next();
    if (hello.done === true || !/^HANDLE [0-9a-f]{128}$/.test(hello.value)) throw new Error(`the CUDA worker did not start: ${String(hello.value)}`);
    rmSync(patternFile, { force: true });
    const spec: KvLayoutSpec = {
      regions: [{ regionId: 0, sizeBytes: total, cudaIpcHandle: Buffer.from(hello.value.slice(7), 'hex'), deviceIndex: 0 }],
      planes: Array.from({ length: layers * 2 }, (_, p) => ({ layer: p >> 1, regionId: 0, offset: p * planeBytes, blockStride: blockBytes, blockBytes })),
      numBlocks,
      blockSize,
      chunkTokens,
    };
    const kv = new RegisteredKv(spec);
    const batchBytes = kv.chunkBytes * perBatch;
    const pool = new NativePool(batchBytes * 4 + kv.chunkBytes);
    const sets = [0, 1].map(() => Array.from({ length: perBatch }, () => pool.allocate(kv.chunkBytes)!));
    const slabs = sets[0];
    const ids = (): Uint32Array[] => {
      const order = shuffled(numBlocks);
      return slabs.map((_, c) => order.subarray(c * blocksPerChunk, (c + 1) * blocksPerChunk));
    };

    // Bytes first: a gather must reproduce the pattern, and a scatter must
    // land where a second gather finds it.
    const expected = (blockIds: Uint32Array): Buffer =>
      Buffer.concat(Array.from({ length: layers * 2 }, (_, p) => Array.from(blockIds, (b) => pattern.subarray(p * planeBytes + b * blockBytes, p * planeBytes + (b + 1) * blockBytes))).flat());
    const first = ids();
    await kv.gather(first.map((blockIds, c) => ({ blockIds, dst: slabs[c].buf })));
    let verified = first.every((blockIds, c) => slabs[c].buf.equals(expected(blockIds)));
    const target = Uint32Array.from(first[1]);
    await kv.scatter([{ blockIds: target, src: slabs[0].buf }]);
    const check = pool.allocate(kv.chunkBytes)!;
    await kv.gather([{ blockIds: target, dst: check.buf }]);
    verified &&= check.buf.equals(slabs[0].buf);
    check.release();

    const ref = pool.allocate(batchBytes)!;
    refPtr = testing.alloc(batchBytes, 0).ptr;
    const g: number[] = [], s: number[] = [], g1: number[] = [], s1: number[] = [], sub: number[] = [];
    const gg: number[] = [], gs: number[] = [], d2h: number[] = [], h2d: number[] = [], rg: number[] = [], rs: number[] = [];
    const gather = (set: number): Promise<void> => kv.gather(ids().map((blockIds, c) => ({ blockIds, dst: sets[set][c].buf })));
    const scatter = (set: number): Promise<void> => kv.scatter(ids().map((blockIds, c) => ({ blockIds, src: sets[set][c].buf })));
    for (let r = 0; r < rounds; r++) {
      const tg1 = await timeIt(iters, 1, gather);
      const ts1 = await timeIt(iters, 1, scatter);
      const tg = await timeIt(iters, 2, gather);
      const ts = await timeIt(iters, 2, scatter);
      g.push(gbps(batchBytes * iters, tg.wall));
      s.push(gbps(batchBytes * iters, ts.wall));
      g1.push(gbps(batchBytes * iters, tg1.wall));
      s1.push(gbps(batchBytes * iters, ts1.wall));
      sub.push((tg1.submit + ts1.submit) / (2 * iters));
      gg.push(gbps(batchBytes * iters, tg1.gpu));
      gs.push(gbps(batchBytes * iters, ts1.gpu));
      d2h.push(gbps(batchBytes * iters, testing.timeMemcpy(refPtr, ref.buf, false, iters)));
      h2d.push(gbps(batchBytes * iters, testing.timeMemcpy(refPtr, ref.buf, true, iters)));
      rg.push(g[r] / d2h[r]);
      rs.push(s[r] / h2d[r]);
    }
    ref.release();
    sets.flat().forEach((x) => x.release());
    pool.close();
    await kv.close();
    return {
      bench: 'throughput',
      tier: 'host',
      source: 'cuda',
      shape: `${layers} layers x ${heads} kv heads x ${headDim} dim x ${elem} B, block ${blockSize}, chunk ${chunkTokens} tokens, flash-attn layout in one device allocation, shuffled block ids`,
      cuda_copy: mode,
      chunk_bytes: kv.chunkBytes,
      chunks_per_batch: perBatch,
      iters,
      rounds,
      verified,
      gather_gbps: median(g),
      scatter_gbps: median(s),
      serial: { gather_gbps: median(g1), scatter_gbps: median(s1), js_submit_ms_per_batch: Math.round(median(sub) * 1000) / 1000 },
      gpu_only: { gather_gbps: median(gg), scatter_gbps: median(gs) },
      reference: { what: `cudaMemcpyAsync of ${batchBytes} contiguous bytes between device memory and a cudaHostAlloc slab, CUDA events`, d2h_gbps: median(d2h), h2d_gbps: median(h2d) },
      ratio: { gather: Math.round(median(rg) * 100) / 100, scatter: Math.round(median(rs) * 100) / 100 },
    };
  } finally {
    if (refPtr !== undefined) testing.free(refPtr);
    rmSync(patternFile, { force: true });
    child.stdin.write('EXIT\n');
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const i = args.indexOf('--mode');
  const r = await runCudaThroughput({ mode: i >= 0 ? (args[i + 1] as CudaCopyMode) : undefined });
  console.log(args.includes('--json') ? JSON.stringify(r) : r);
}
