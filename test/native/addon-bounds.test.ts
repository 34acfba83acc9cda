// The C++ boundary on its own: segment lists that TypeScript would never
// produce must still be rejected with a code, before any byte moves. This
// file loads the .node directly on purpose (product code goes through
// native/index.ts).
import { createRequire } from 'node:module';
import { rmSync, writeFileSync } from 'node:fs';
import { afterAll, expect, test } from 'vitest';

import { shmPath } from './shm-fixture.js';

interface RawRegion { close(): void; readonly size: number; readonly kind: string }
interface RawPool { alloc(bytes: number): number; free(offset: number): void; info(): { usedBytes: number }; close(): void }
interface Raw {
  Pool: new (bytes: number) => RawPool;
  Region: new (path: string, size: number) => RawRegion;
  copy(scatter: boolean, regions: unknown[], buffers: unknown[], segs: unknown): Promise<void>;
}
const raw = createRequire(import.meta.url)('../../build/Release/kvtier_native.node') as Raw;

const file = shmPath('raw');
writeFileSync(file, Buffer.alloc(8192, 5));
afterAll(() => rmSync(file, { force: true }));

const cases: [string, number[], RegExp][] = [
  ['region index out of range', [1, 0, 0, 0, 16], /expected region index below 1, got 1/],
  ['buffer index out of range', [0, 0, 3, 0, 16], /expected buffer index below 1, got 3/],
  ['region overrun', [0, 8180, 0, 0, 16], /outside region .* of 8192 bytes/],
  ['offset + length overflow', [0, 2 ** 53 - 1, 0, 0, 16], /outside region/],
  ['buffer overrun', [0, 0, 0, 60, 8], /outside buffer 0 of 64 bytes/],
  ['zero length', [0, 0, 0, 0, 0], /outside region/],
  ['negative', [0, -1, 0, 0, 8], /non-negative integers/],
  ['fraction', [0, 0.5, 0, 0, 8], /non-negative integers/],
  ['NaN', [0, NaN, 0, 0, 8], /non-negative integers/],
];

test.each(cases)('%s is rejected with KVT_BAD_REQUEST', async (_name, seg, message) => {
  const region = new raw.Region(file, 8192);
  const buf = Buffer.alloc(64, 9);
  const good = [0, 0, 0, 0, 8];
  const p = raw.copy(false, [region], [buf], Float64Array.from([...good, ...seg]));
  await expect(p).rejects.toMatchObject({ code: 'KVT_BAD_REQUEST', message: expect.stringMatching(message) });
  expect(buf.every((x) => x === 9)).toBe(true);
  region.close();
});

test('wrong argument types and closed regions are rejected, not crashed on', async () => {
  const region = new raw.Region(file, 8192);
  const buf = Buffer.alloc(64);
  expect(() => raw.copy(false, [{}], [buf], new Float64Array(5))).toThrow(/expected a Region for regions\[0\]/);
  expect(() => raw.copy(false, [region], ['x'], new Float64Array(5))).toThrow(/expected a Buffer for buffers\[0\]/);
  expect(() => raw.copy(false, [region], [buf], new Uint32Array(5))).toThrow(/expected \(boolean/);
  expect(() => raw.copy(false, [region], [buf], new Float64Array(4))).toThrow(/multiple of 5/);
  region.close();
  expect(region.kind).toBe('closed');
  expect(() => raw.copy(false, [region], [buf], new Float64Array(5))).toThrow(/region 0 is closed/);
  expect(() => new raw.Region(file, 8193)).toThrow(/expected at least 8193 bytes/);
});

test('a valid segment list copies exactly the named bytes', async () => {
  const region = new raw.Region(file, 8192);
  const buf = Buffer.alloc(64, 9);
  await raw.copy(false, [region], [buf], Float64Array.from([0, 100, 0, 8, 16]));
  expect([...buf.subarray(0, 8)].every((x) => x === 9)).toBe(true);
  expect([...buf.subarray(8, 24)].every((x) => x === 5)).toBe(true);
  expect([...buf.subarray(24)].every((x) => x === 9)).toBe(true);
  region.close();
});

test('the allocator rejects a double free and a foreign offset without corrupting itself', () => {
  const pool = new raw.Pool(1 << 20);
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
