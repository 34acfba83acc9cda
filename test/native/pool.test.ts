// The pinned pool: slabs are zero-copy views, exhaustion is null, releases are
// checked, freed space coalesces, close() empties every view.
import { describe, expect, test } from 'vitest';

import { NativeError } from '../../src/errors.js';
import { ARENA_MAX_BYTES, NativePool } from '../../native/index.js';

describe('NativePool', () => {
  // Regression: a 5 GB pool (the example config) aborted the daemon with a
  // double free, because one ArrayBuffer cannot exceed 4 GiB.
  test('a pool larger than one arena is built from several, and slabs never span two', () => {
    const pool = new NativePool(ARENA_MAX_BYTES + (64 << 20));
    expect(pool.capacityBytes).toBe(ARENA_MAX_BYTES + (64 << 20));
    const big = [pool.allocate(1 << 30)!, pool.allocate(1 << 30)!];
    const small = pool.allocate(64 << 20)!;
    expect(small).not.toBeNull();
    expect(small.buf.buffer).not.toBe(big[0].buf.buffer);
    expect(pool.allocate(4096)).toBeNull();
    big[1].buf[big[1].buf.length - 1] = 7;
    small.buf.fill(3);
    expect(big[1].buf[big[1].buf.length - 1]).toBe(7);
    expect(pool.info().usedBytes).toBe(pool.capacityBytes);
    for (const s of [...big, small]) s.release();
    expect(pool.info().usedBytes).toBe(0);
    pool.close();
  });


  test('reports what the OS gave', () => {
    const pool = new NativePool(16 << 20);
    const info = pool.info();
    expect(info.kind).toBe('native');
    expect(info.capacityBytes).toBe(16 << 20);
    expect(info.usedBytes).toBe(0);
    expect(typeof info.pinned).toBe('boolean');
    expect(typeof info.hugePages).toBe('boolean');
    expect(info.detail).toMatch(/cudaHostAlloc|mmap/);
    pool.close();
  });

  test('slabs have the requested length, do not overlap, and are views of one memory', () => {
    const pool = new NativePool(1 << 20);
    const a = pool.allocate(1000)!;
    const b = pool.allocate(5000)!;
    expect(a.buf.length).toBe(1000);
    expect(b.buf.length).toBe(5000);
    expect(a.buf.buffer).toBe(b.buf.buffer);
    a.buf.fill(1);
    b.buf.fill(2);
    expect(a.buf.every((x) => x === 1)).toBe(true);
    expect(pool.info().usedBytes).toBe(4096 + 8192);
    a.release();
    b.release();
    expect(pool.info().usedBytes).toBe(0);
    pool.close();
  });

  test('allocate returns null when full, and succeeds again after a release', () => {
    const pool = new NativePool(1 << 20);
    const slabs = [];
    for (;;) {
      const s = pool.allocate(100 << 10);
      if (s === null) break;
      slabs.push(s);
    }
    expect(slabs.length).toBe(10); // 100 KiB is 25 granules of 4 KiB
    expect(pool.allocate(200 << 10)).toBeNull();
    slabs[3].release();
    const again = pool.allocate(100 << 10);
    expect(again).not.toBeNull();
    expect(again!.buf.byteOffset).toBe(slabs[3].buf.byteOffset);
    for (const s of slabs.filter((_, i) => i !== 3)) s.release();
    again!.release();
    const whole = pool.allocate(1 << 20);
    expect(whole).not.toBeNull();
    whole!.release();
    pool.close();
  });

  test('a double release throws and leaves the allocator intact', () => {
    const pool = new NativePool(1 << 20);
    const a = pool.allocate(4096)!;
    a.release();
    expect(() => a.release()).toThrow(NativeError);
    expect(() => a.release()).toThrow(/released twice/);
    const b = pool.allocate(4096)!;
    const c = pool.allocate(4096)!;
    expect(b.buf.byteOffset).not.toBe(c.buf.byteOffset);
    expect(pool.info().usedBytes).toBe(8192);
    b.release();
    c.release();
    pool.close();
  });

  test('bad sizes are rejected', () => {
    const pool = new NativePool(1 << 20);
    expect(() => pool.allocate(0)).toThrow(/expected a positive integer for slab bytes, got 0/);
    expect(() => pool.allocate(1.5)).toThrow(/got 1.5/);
    expect(pool.allocate(2 << 20)).toBeNull();
    expect(() => new NativePool(10)).toThrow(/expected an integer >= 4096 for the pool size in bytes, got 10/);
    pool.close();
  });

  test('close() empties every slab view and later calls are safe', () => {
    const pool = new NativePool(1 << 20);
    const a = pool.allocate(4096)!;
    pool.close();
    expect(a.buf.length).toBe(0);
    expect(() => a.release()).not.toThrow();
    expect(() => pool.allocate(10)).toThrow(/closed/);
    pool.close();
  });
});
