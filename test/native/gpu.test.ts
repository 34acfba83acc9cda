// The CUDA path, end to end, when a device is present: a child process owns
// device memory (as a vLLM worker would) and hands over a CUDA IPC handle;
// the daemon side gathers into the cudaHostAlloc pool and scatters back, and
// the bytes are compared with the same reference model as the shm tests.
// Without a device the suite is skipped, and says why.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { BadRequestError } from '../../src/errors.js';
import { NativePool, RegisteredKv, addonPath, nativeAvailable, nativeInfo, setCudaCopyMode, type CudaCopyMode, type KvLayoutSpec } from '../../native/index.js';
import { expectedChunk, packed, shmPath, type KvFixture, type Shape } from './shm-fixture.js';

const here = dirname(fileURLToPath(import.meta.url));
const info = nativeAvailable() ? nativeInfo() : undefined;
const skip = info === undefined || info.deviceCount === 0;
if (skip) {
  console.log(`gpu.test.ts skipped: ${info === undefined ? 'the native addon is not built' : info.reason}`);
}

describe.skipIf(skip)('CUDA backend (device present)', () => {
  // 256 blocks: 64 MiB of device KV, so a whole-cache batch spans four 16 MiB staging windows.
  const shape: Shape = { layers: 4, numBlocks: 256, blockSize: 16, heads: 8, headDim: 128, elemBytes: 2, chunkTokens: 256 };
  let fx: KvFixture;
  let child: ChildProcessWithoutNullStreams;
  let lines: AsyncIterator<string>;
  let spec: KvLayoutSpec;

  async function next(): Promise<string> {
    const r = await lines.next();
    if (r.done === true) throw new Error('the CUDA worker child exited early');
    return r.value;
  }

  /** The worker's device memory, as it is now. */
  async function dumpDevice(): Promise<Buffer> {
    const dump = shmPath('gpu-dump');
    child.stdin.write(`DUMP ${dump}\n`);
    expect(await next()).toBe('DUMPED');
    const bytes = readFileSync(dump);
    rmSync(dump);
    return bytes;
  }

  beforeAll(async () => {
    fx = packed(shape);
    child = spawn(process.execPath, [join(here, '..', '..', 'bench', 'cuda-worker.mjs'), addonPath(), fx.files[0]]);
    lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const hello = await next();
    expect(hello).toMatch(/^HANDLE [0-9a-f]{128}$/);
    const handle = Buffer.from(hello.slice(7), 'hex');
    spec = { ...fx.spec, regions: [{ regionId: 100, sizeBytes: fx.spec.regions[0].sizeBytes, cudaIpcHandle: handle, deviceIndex: 0 }] };
  });

  afterAll(() => {
    child?.stdin.write('EXIT\n');
    fx?.cleanup();
  });

  test('nativeInfo reports the CUDA backend and the pool is cudaHostAlloc memory', () => {
    expect(info!.backend).toBe('cuda');
    const pool = new NativePool(1 << 20);
    expect(pool.info().pinned).toBe(true);
    expect(pool.info().detail).toMatch(/cudaHostAlloc/);
    pool.close();
  });

  test.each<CudaCopyMode>(['staged', 'kernel'])('%s: gather from device blocks into pinned slabs, scatter back into other blocks', async (mode) => {
    expect(setCudaCopyMode(mode)).toBe(true);
    expect(nativeInfo().cudaCopy).toBe(mode);
    const kv = new RegisteredKv(spec);
    expect(kv.backend).toBe('cuda');
    const pool = new NativePool(kv.chunkBytes * 2);
    const original = await dumpDevice(); // an earlier test may have scattered into it
    const from = [Array.from({ length: 16 }, (_, i) => 63 - i * 2), Array.from({ length: 16 }, (_, i) => i * 2)];
    const slabs = from.map(() => pool.allocate(kv.chunkBytes)!);
    await kv.gather(from.map((ids, c) => ({ blockIds: Uint32Array.from(ids), dst: slabs[c].buf })));
    from.forEach((ids, c) => expect(slabs[c].buf.equals(expectedChunk(fx, [original], ids))).toBe(true));

    const to = from[0].map((b) => b - 1); // odd blocks 62..32 -> even blocks; disjoint from from[0]
    await kv.scatter([{ blockIds: Uint32Array.from(to), src: slabs[0].buf }]);
    const after = await dumpDevice();
    const want = Buffer.from(original);
    fx.spec.planes.forEach((_, p) => {
      from[0].forEach((src, k) => {
        const [, so, len] = fx.where(p, src);
        const [, dOff] = fx.where(p, to[k]);
        original.copy(want, dOff, so, so + len);
      });
    });
    expect(after.equals(want)).toBe(true);
    slabs.forEach((s) => s.release());
    pool.close();
    await kv.close();
  });

  test.each<CudaCopyMode>(['staged', 'kernel'])('%s: every block of the cache in one batch (several staging windows), scattered back permuted', async (mode) => {
    expect(setCudaCopyMode(mode)).toBe(true);
    const kv = new RegisteredKv(spec);
    const chunks = shape.numBlocks / kv.blocksPerChunk;
    const pool = new NativePool(kv.chunkBytes * chunks);
    const slabs = Array.from({ length: chunks }, () => pool.allocate(kv.chunkBytes)!);
    const order = Array.from({ length: shape.numBlocks }, (_, i) => (i * 97 + 13) % shape.numBlocks); // a permutation
    const ids = (c: number, shift: number): number[] => order.slice(c * kv.blocksPerChunk, (c + 1) * kv.blocksPerChunk).map((b) => (b + shift) % shape.numBlocks);
    const before = await dumpDevice();
    await kv.gather(slabs.map((slab, c) => ({ blockIds: Uint32Array.from(ids(c, 0)), dst: slab.buf })));
    slabs.forEach((slab, c) => expect(slab.buf.equals(expectedChunk(fx, [before], ids(c, 0)))).toBe(true));
    // Every block b goes to block b+5: the whole cache, rotated by five blocks.
    await kv.scatter(slabs.map((slab, c) => ({ blockIds: Uint32Array.from(ids(c, 5)), src: slab.buf })));
    const after = await dumpDevice();
    const want = Buffer.from(before);
    fx.spec.planes.forEach((_, p) => {
      for (let b = 0; b < shape.numBlocks; b++) {
        const [, so, len] = fx.where(p, b);
        const [, dOff] = fx.where(p, (b + 5) % shape.numBlocks);
        before.copy(want, dOff, so, so + len);
      }
    });
    expect(after.equals(want)).toBe(true);
    slabs.forEach((x) => x.release());
    pool.close();
    await kv.close();
  });

  test('pageable (non-pool) buffers are refused for a CUDA region', async () => {
    const kv = new RegisteredKv(spec);
    await expect(kv.gather([{ blockIds: Uint32Array.from([1]), dst: Buffer.alloc(kv.chunkBytes) }])).rejects.toBeInstanceOf(BadRequestError);
    await kv.close();
  });
});
