// The C++ boundary on its own: planes, block ids and buffers that TypeScript
// would never send must still be rejected with a code, before any byte moves. This
// file loads the .node directly on purpose (product code goes through
// native/index.ts).
import { createRequire } from 'node:module';
import { rmSync, writeFileSync } from 'node:fs';
import { afterAll, expect, test } from 'vitest';

import { shmPath } from './shm-fixture.js';

interface RawRegion { close(): void; readonly size: number; readonly kind: string }
interface RawPool {
  alloc(bytes: number): number;
  free(offset: number): void;
  info(): { usedBytes: number; readyBytes: number; warm: boolean; pinned: boolean };
  warm(stepBytes: number): Promise<boolean>;
  warmNow(upToBytes: number): void;
  close(): void;
}
interface Raw {
  Pool: new (bytes: number) => RawPool;
  Region: new (path: string, size: number, shmDir: string, ownerUid: number) => RawRegion;
  copyBlocks(scatter: boolean, regions: unknown[], buffers: unknown[], ids: unknown[], planes: unknown, numBlocks: unknown): Promise<void>;
}
const raw = createRequire(import.meta.url)('../../build/Release/kvtier_native.node') as Raw;

const file = shmPath('raw');
writeFileSync(file, Buffer.alloc(8192, 5));
afterAll(() => rmSync(file, { force: true }));

// [name, plane [regionIndex, offset, blockStride, blockBytes], numBlocks, block ids, buffer bytes, code, message]
const cases: [string, number[], number, number[], number, string, RegExp][] = [
  ['region index out of range', [1, 0, 16, 16], 4, [0], 16, 'KVT_BAD_LAYOUT', /expected region index below 1, got 1/],
  ['plane past its region', [0, 8180, 16, 16], 1, [0], 16, 'KVT_BAD_LAYOUT', /would end outside region .* of 8192 bytes/],
  ['last block past its region', [0, 0, 1024, 16], 9, [0], 16, 'KVT_BAD_LAYOUT', /block 8 would end outside region/],
  ['offset + length overflow', [0, 2 ** 53 - 1, 16, 16], 1, [0], 16, 'KVT_BAD_LAYOUT', /would end outside region/],
  ['stride x blocks overflow', [0, 0, 2 ** 52, 16], 8, [0], 16, 'KVT_BAD_LAYOUT', /would end outside region/],
  ['zero block bytes', [0, 0, 16, 0], 4, [0], 16, 'KVT_BAD_LAYOUT', /positive block bytes/],
  ['negative', [0, -1, 16, 16], 4, [0], 16, 'KVT_BAD_LAYOUT', /non-negative integers/],
  ['fraction', [0, 0.5, 16, 16], 4, [0], 16, 'KVT_BAD_LAYOUT', /non-negative integers/],
  ['NaN', [0, NaN, 16, 16], 4, [0], 16, 'KVT_BAD_LAYOUT', /non-negative integers/],
  ['block id past num_blocks', [0, 0, 16, 16], 4, [4], 16, 'KVT_BAD_BLOCK_ID', /expected a block id below 4, got 4/],
  ['skip marker in a gather', [0, 0, 16, 16], 4, [0xffffffff], 16, 'KVT_BAD_BLOCK_ID', /expected a block id below 4/],
  ['buffer too short for its blocks', [0, 0, 16, 16], 4, [0, 1], 24, 'KVT_BAD_BLOCK_ID', /2 blocks do not fit its buffer of 24 bytes/],
  ['no block ids', [0, 0, 16, 16], 4, [], 16, 'KVT_BAD_BLOCK_ID', /0 blocks do not fit/],
];

test.each(cases)('%s is rejected with a code, nothing copied', async (_name, plane, numBlocks, ids, bytes, code, message) => {
  const region = new raw.Region(file, 8192, '/dev/shm', process.getuid!());
  const buf = Buffer.alloc(bytes, 9);
  const p = raw.copyBlocks(false, [region], [buf], [Uint32Array.from(ids)], Float64Array.from(plane), numBlocks);
  await expect(p).rejects.toMatchObject({ code, message: expect.stringMatching(message) });
  expect(buf.every((x) => x === 9)).toBe(true);
  region.close();
});

test('wrong argument types and closed regions are rejected, not crashed on', async () => {
  const region = new raw.Region(file, 8192, '/dev/shm', process.getuid!());
  const buf = Buffer.alloc(64);
  const ids = [Uint32Array.from([0])];
  const plane = Float64Array.from([0, 0, 16, 16]);
  expect(() => raw.copyBlocks(false, [{}], [buf], ids, plane, 4)).toThrow(/expected a Region for regions\[0\]/);
  expect(() => raw.copyBlocks(false, [region], ['x'], ids, plane, 4)).toThrow(/expected a Buffer for buffers\[0\]/);
  expect(() => raw.copyBlocks(false, [region], [buf], [[0]], plane, 4)).toThrow(/expected a Uint32Array for blockIds\[0\]/);
  expect(() => raw.copyBlocks(false, [region], [buf], ids, new Uint32Array(4), 4)).toThrow(/expected \(boolean/);
  expect(() => raw.copyBlocks(false, [region], [buf], ids, new Float64Array(3), 4)).toThrow(/multiple of 4/);
  expect(() => raw.copyBlocks(false, [region], [buf], ids, plane, 1.5)).toThrow(/non-negative integer for num_blocks/);
  await expect(raw.copyBlocks(false, [region], [buf, buf], ids, plane, 4)).rejects.toMatchObject({ code: 'KVT_BAD_REQUEST', message: expect.stringMatching(/one block id array per buffer/) });
  region.close();
  expect(region.kind).toBe('closed');
  expect(() => raw.copyBlocks(false, [region], [buf], ids, plane, 4)).toThrow(/region 0 is closed/);
  expect(() => new raw.Region(file, 8193, '/dev/shm', process.getuid!())).toThrow(/expected at least 8193 bytes/);
});

test('a valid copy moves exactly the named bytes', async () => {
  const region = new raw.Region(file, 8192, '/dev/shm', process.getuid!());
  const buf = Buffer.alloc(24, 9);
  await raw.copyBlocks(false, [region], [buf], [Uint32Array.from([6])], Float64Array.from([0, 4, 16, 16]), 8);
  expect([...buf.subarray(0, 16)].every((x) => x === 5)).toBe(true);
  expect([...buf.subarray(16)].every((x) => x === 9)).toBe(true);
  region.close();
});

test('an arena hands out only what is warm, and grows as warming goes', async () => {
  const pool = new raw.Pool(1 << 20);
  expect(pool.alloc(4096)).toBe(-1);
  expect(pool.info()).toMatchObject({ readyBytes: 0, warm: false, pinned: false });
  pool.warmNow(256 * 1024);
  expect(pool.info()).toMatchObject({ readyBytes: 256 * 1024, warm: false });
  expect(pool.alloc(200 * 1024)).toBe(0);
  expect(pool.alloc(100 * 1024)).toBe(-1);
  expect(() => pool.warm(100)).toThrow(/expected at least 4096 for warming step bytes/);
  expect(await pool.warm(64 * 1024)).toBe(true);
  expect(pool.info()).toMatchObject({ readyBytes: 1 << 20, warm: true });
  // The freed first extent and the rest coalesce: the whole arena fits again.
  pool.free(0);
  expect(pool.alloc(1 << 20)).toBe(0);
  pool.close();
});

test('a close() during warming stops it; the promise settles false', async () => {
  const pool = new raw.Pool(256 << 20);
  const warming = pool.warm(4096);
  pool.close();
  expect(await warming).toBe(false);
});

test('the allocator rejects a double free and a foreign offset without corrupting itself', () => {
  const pool = new raw.Pool(1 << 20);
  pool.warmNow(1 << 20);
  const a = pool.alloc(5000);
  const b = pool.alloc(5000);
  expect([a, b]).toEqual([0, 8192]);
  pool.free(a);
  expect(() => pool.free(a)).toThrow(/slab at offset 0 is not live in this pool/);
  expect(() => pool.free(4096)).toThrow(/not live/);
  expect(() => pool.free(8193)).toThrow(/not live/);
  expect(() => pool.free(-1)).toThrow(/non-negative integer/);
  expect(pool.info().usedBytes).toBe(8192);
  expect(pool.alloc(8192)).toBe(0);
  expect(pool.alloc(1 << 20)).toBe(-1);
  pool.close();
  expect(() => pool.alloc(1)).toThrow(/closed/);
});
