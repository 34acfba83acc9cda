// Gather and scatter against real shm files in the four layouts vLLM uses;
// every byte is compared with a reference model built from the tensor shape.
import { closeSync, openSync, writeSync } from 'node:fs';
import { afterAll, describe, expect, test } from 'vitest';

import { NativePool, RegisteredKv, SKIP_BLOCK } from '../../native/index.js';
import { expectedChunk, flashAttn, flashInfer, mla, packed, type KvFixture, type Shape } from './shm-fixture.js';

const shape: Shape = { layers: 3, numBlocks: 40, blockSize: 4, heads: 2, headDim: 8, elemBytes: 2, chunkTokens: 16 };
const layouts: [string, (s: Shape) => KvFixture][] = [
  ['flash-attn (2, NB, bs, H, D) per layer', flashAttn],
  ['flashinfer (NB, 2, bs, H, D) per layer', flashInfer],
  ['MLA (NB, bs, 576) per layer', mla],
  ['all layers packed in one buffer', packed],
];

const fixtures: KvFixture[] = [];
afterAll(() => fixtures.forEach((f) => f.cleanup()));

describe.each(layouts)('%s', (_name, make) => {
  test('chunkBytes is blocksPerChunk x the bytes of every plane block', async () => {
    const fx = make(shape);
    fixtures.push(fx);
    const kv = new RegisteredKv(fx.spec);
    const perBlock = fx.spec.planes.reduce((a, p) => a + p.blockBytes, 0);
    expect(kv.blocksPerChunk).toBe(4);
    expect(kv.chunkBytes).toBe(4 * perBlock);
    expect(kv.backend).toBe('cpu');
    await kv.close();
  });

  test('gather of several chunks into pool slabs matches the reference bytes', async () => {
    const fx = make(shape);
    fixtures.push(fx);
    const kv = new RegisteredKv(fx.spec);
    const pool = new NativePool(8 << 20);
    const chunks = [[7, 3, 30, 1], [12, 13, 14, 15], [39, 0, 22, 8]];
    const slabs = chunks.map(() => pool.allocate(kv.chunkBytes)!);
    await kv.gather(chunks.map((ids, i) => ({ blockIds: Uint32Array.from(ids), dst: slabs[i].buf })));
    const data = fx.read();
    chunks.forEach((ids, i) => expect(slabs[i].buf.equals(expectedChunk(fx, data, ids))).toBe(true));
    slabs.forEach((s) => s.release());
    pool.close();
    await kv.close();
  });

  test('scatter into other blocks writes exactly those blocks and nothing else', async () => {
    const fx = make(shape);
    fixtures.push(fx);
    const kv = new RegisteredKv(fx.spec);
    const before = fx.read();
    const from = [5, 6, 7, 8];
    const to = [33, 2, 19, 11];
    const chunk = Buffer.alloc(kv.chunkBytes);
    await kv.gather([{ blockIds: Uint32Array.from(from), dst: chunk }]);
    await kv.scatter([{ blockIds: Uint32Array.from(to), src: chunk }]);
    const want = before.map((b) => Buffer.from(b));
    fx.spec.planes.forEach((_, p) => {
      from.forEach((src, k) => {
        const [r, so, len] = fx.where(p, src);
        const [, dOff] = fx.where(p, to[k]);
        before[r].copy(want[r], dOff, so, so + len);
      });
    });
    const after = fx.read();
    after.forEach((b, r) => expect(b.equals(want[r])).toBe(true));
    await kv.close();
  });

  test('scatter leaves SKIP_BLOCK slots untouched', async () => {
    const fx = make(shape);
    fixtures.push(fx);
    const kv = new RegisteredKv(fx.spec);
    const before = fx.read();
    const chunk = Buffer.alloc(kv.chunkBytes, 0xab);
    await kv.scatter([{ blockIds: Uint32Array.from([20, SKIP_BLOCK, 22, SKIP_BLOCK]), src: chunk }]);
    const after = fx.read();
    fx.spec.planes.forEach((_, p) => {
      for (const b of [20, 22]) {
        const [r, off, len] = fx.where(p, b);
        expect(after[r].subarray(off, off + len).every((x) => x === 0xab)).toBe(true);
      }
      for (const b of [21, 23, 19]) {
        const [r, off, len] = fx.where(p, b);
        expect(after[r].subarray(off, off + len).equals(before[r].subarray(off, off + len))).toBe(true);
      }
    });
    await kv.close();
  });
});

test('a partial chunk (fewer ids than blocksPerChunk) uses the compact n-block layout', async () => {
  const fx = flashAttn(shape);
  fixtures.push(fx);
  const kv = new RegisteredKv(fx.spec);
  const ids = [9, 4];
  const dst = Buffer.alloc((kv.chunkBytes / kv.blocksPerChunk) * ids.length);
  await kv.gather([{ blockIds: Uint32Array.from(ids), dst }]);
  expect(dst.equals(expectedChunk(fx, fx.read(), ids))).toBe(true);
  await kv.close();
});

test('many concurrent gathers all complete with the right bytes', async () => {
  const fx = packed({ ...shape, numBlocks: 256, headDim: 64 });
  fixtures.push(fx);
  const kv = new RegisteredKv(fx.spec);
  const data = fx.read();
  const jobs = Array.from({ length: 64 }, (_, i) => [i * 4, i * 4 + 1, i * 4 + 2, i * 4 + 3]);
  const bufs = jobs.map(() => Buffer.alloc(kv.chunkBytes));
  await Promise.all(jobs.map((ids, i) => kv.gather([{ blockIds: Uint32Array.from(ids), dst: bufs[i] }])));
  jobs.forEach((ids, i) => expect(bufs[i].equals(expectedChunk(fx, data, ids))).toBe(true));
  await kv.close();
});

// A batch of 8 MiB or more is copied with stores that bypass the cache
// (native/src/stream-copy.h); the small batches above never are. Blocks in
// shuffled order put every piece at an odd offset: 555-byte pieces run the
// aligned body, the head and the tail of each piece; 7-byte pieces are
// shorter than the head that would align them.
test.each([
  ['555-byte', { layers: 4, numBlocks: 2048, blockSize: 5, heads: 3, headDim: 37, elemBytes: 1, chunkTokens: 20 }],
  ['7-byte', { layers: 1, numBlocks: 1 << 20, blockSize: 1, heads: 1, headDim: 7, elemBytes: 1, chunkTokens: 64 }],
] as Array<[string, Shape]>)('batches large enough to write around the cache move the same bytes both ways (%s pieces)', async (_name, big) => {
  const fx = flashAttn(big);
  fixtures.push(fx);
  const kv = new RegisteredKv(fx.spec);
  const per = kv.blocksPerChunk;
  const ids = Array.from({ length: big.numBlocks }, (_, i) => (i * 1237) % big.numBlocks);
  const jobs = Array.from({ length: big.numBlocks / per }, (_, c) => ids.slice(c * per, (c + 1) * per));
  expect(jobs.length * kv.chunkBytes).toBeGreaterThanOrEqual(8 << 20);
  const before = fx.read();
  const bufs = jobs.map(() => Buffer.alloc(kv.chunkBytes));
  await kv.gather(jobs.map((j, i) => ({ blockIds: Uint32Array.from(j), dst: bufs[i] })));
  jobs.forEach((j, i) => expect(bufs[i].equals(expectedChunk(fx, before, j))).toBe(true));
  // Zero the files in place (the addon has them mapped), then put every block back.
  fx.files.forEach((f, r) => {
    const fd = openSync(f, 'r+');
    writeSync(fd, Buffer.alloc(before[r].length), 0, before[r].length, 0);
    closeSync(fd);
  });
  await kv.scatter(jobs.map((j, i) => ({ blockIds: Uint32Array.from(j), src: bufs[i] })));
  fx.read().forEach((b, r) => expect(b.equals(before[r])).toBe(true));
  await kv.close();
}, 60_000);
