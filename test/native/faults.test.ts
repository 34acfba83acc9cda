// Faults: bad ids, bad layouts, regions that shrink or vanish under a
// registration, close() while copies are in flight. The process must survive
// every one of them with a coded error.
import { closeSync, ftruncateSync, openSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';

import { BadBlockIdError, BadLayoutError, ForbiddenError, RegionUnavailableError } from '../../src/errors.js';
import { RegisteredKv, SKIP_BLOCK } from '../../native/index.js';
import { expectedChunk, flashAttn, packed, shmPath, type KvFixture, type Shape } from './shm-fixture.js';

const shape: Shape = { layers: 2, numBlocks: 32, blockSize: 4, heads: 2, headDim: 8, elemBytes: 2, chunkTokens: 16 };
const fixtures: KvFixture[] = [];
afterAll(() => fixtures.forEach((f) => f.cleanup()));

function fixture(make = flashAttn, s = shape): KvFixture {
  const fx = make(s);
  fixtures.push(fx);
  return fx;
}

describe('block ids are checked in TypeScript before any copy', () => {
  test('an out-of-range id names the limit and the id', async () => {
    const kv = new RegisteredKv(fixture().spec);
    const p = kv.gather([{ blockIds: Uint32Array.from([1, 2, 32, 3]), dst: Buffer.alloc(kv.chunkBytes) }]);
    await expect(p).rejects.toBeInstanceOf(BadBlockIdError);
    await expect(p).rejects.toThrow('expected a block id below num_blocks 32 for job 0 block 2, got 32');
    await kv.close();
  });

  test('duplicate ids in one request are rejected, also across jobs', async () => {
    const kv = new RegisteredKv(fixture().spec);
    const dst = Buffer.alloc(kv.chunkBytes);
    await expect(kv.gather([{ blockIds: Uint32Array.from([1, 2, 1, 3]), dst }])).rejects.toThrow(/got 1 more than once/);
    await expect(
      kv.scatter([
        { blockIds: Uint32Array.from([4, 5, 6, 7]), src: dst },
        { blockIds: Uint32Array.from([8, 9, 7, 10]), src: Buffer.alloc(kv.chunkBytes) },
      ]),
    ).rejects.toThrow(/expected distinct block ids in one request, got 7 more than once \(job 1 block 2\)/);
    await kv.close();
  });

  test('SKIP_BLOCK is only meaningful in a scatter', async () => {
    const kv = new RegisteredKv(fixture().spec);
    await expect(kv.gather([{ blockIds: Uint32Array.from([SKIP_BLOCK]), dst: Buffer.alloc(kv.chunkBytes) }])).rejects.toBeInstanceOf(BadBlockIdError);
    await kv.scatter([{ blockIds: Uint32Array.from([SKIP_BLOCK, SKIP_BLOCK]), src: Buffer.alloc(kv.chunkBytes) }]);
    await kv.close();
  });

  test('too many ids for a chunk, and a buffer too short, are rejected', async () => {
    const kv = new RegisteredKv(fixture().spec);
    await expect(kv.gather([{ blockIds: new Uint32Array(5), dst: Buffer.alloc(kv.chunkBytes * 2) }])).rejects.toThrow(/expected 1 to 4 block ids/);
    await expect(kv.gather([{ blockIds: Uint32Array.from([1, 2, 3, 4]), dst: Buffer.alloc(kv.chunkBytes - 1) }])).rejects.toThrow(
      `expected at least ${kv.chunkBytes} bytes for the dst buffer of job 0, got ${kv.chunkBytes - 1}`,
    );
    await kv.close();
  });
});

describe('layouts are checked at registration', () => {
  test('a plane overrunning its region', () => {
    const fx = fixture();
    const planes = fx.spec.planes.map((p, i) => (i === 1 ? { ...p, offset: p.offset + 2 } : p));
    expect(() => new RegisteredKv({ ...fx.spec, planes })).toThrow(BadLayoutError);
    expect(() => new RegisteredKv({ ...fx.spec, planes })).toThrow(/expected planes\[1\] \(layer 0\) to end within region 100 of \d+ bytes/);
  });

  test('chunk size not a multiple of the block size, zero block bytes, unknown region', () => {
    const fx = fixture();
    expect(() => new RegisteredKv({ ...fx.spec, chunkTokens: 18 })).toThrow('expected chunk_size to be a multiple of block_size 4, got 18');
    const zero = fx.spec.planes.map((p) => ({ ...p, blockBytes: 0 }));
    expect(() => new RegisteredKv({ ...fx.spec, planes: zero })).toThrow(/expected an integer >= 1 for planes\[0\] \(layer 0\)\.block_bytes, got 0/);
    const foreign = fx.spec.planes.map((p) => ({ ...p, regionId: 7 }));
    expect(() => new RegisteredKv({ ...fx.spec, planes: foreign })).toThrow(/expected a registered region id/);
  });

  test('a shm path outside the allowed directories, relative, or with .. is refused', () => {
    const fx = fixture();
    for (const bad of ['/etc/passwd', 'dev/shm/x', '/dev/shm/../etc/passwd', '/dev/shmx/y']) {
      const spec = { ...fx.spec, regions: fx.spec.regions.map((r) => ({ ...r, shmPath: bad })) };
      expect(() => new RegisteredKv(spec)).toThrow(BadLayoutError);
      expect(() => new RegisteredKv(spec)).toThrow(`expected an absolute shm_path inside /dev/shm for region 100, got ${bad}`);
    }
    expect(() => new RegisteredKv(fx.spec, { shmDirs: ['/tmp'] })).toThrow(/inside \/tmp/);
  });

  test('a symlink as the region file is refused (O_NOFOLLOW)', () => {
    const fx = fixture();
    const link = shmPath('link');
    symlinkSync(fx.files[0], link);
    try {
      const spec = { ...fx.spec, regions: fx.spec.regions.map((r, i) => (i === 0 ? { ...r, shmPath: link } : r)) };
      expect(() => new RegisteredKv(spec)).toThrow(ForbiddenError);
    } finally {
      rmSync(link);
    }
  });

  test('a missing shm file, or one smaller than size_bytes, is RegionUnavailable', () => {
    const fx = fixture();
    const missing = { ...fx.spec, regions: fx.spec.regions.map((r) => ({ ...r, shmPath: '/dev/shm/kvtier-test-does-not-exist' })) };
    expect(() => new RegisteredKv(missing)).toThrow(RegionUnavailableError);
    const small = shmPath('small');
    writeFileSync(small, Buffer.alloc(100));
    try {
      const spec = { ...fx.spec, regions: fx.spec.regions.map((r, i) => (i === 1 ? { ...r, shmPath: small } : r)) };
      expect(() => new RegisteredKv(spec)).toThrow(/expected at least \d+ bytes for size_bytes, got a file of 100/);
    } finally {
      rmSync(small);
    }
  });
});

describe('regions that change under a registration', () => {
  test('a file truncated after registration fails the copy with a coded error', async () => {
    const fx = fixture();
    const kv = new RegisteredKv(fx.spec);
    truncateSync(fx.files[1], 4096);
    const p = kv.gather([{ blockIds: Uint32Array.from([1, 2, 3, 4]), dst: Buffer.alloc(kv.chunkBytes) }]);
    await expect(p).rejects.toBeInstanceOf(RegionUnavailableError);
    await expect(p).rejects.toThrow(/shrank to 4096 bytes/);
    await expect(kv.scatter([{ blockIds: Uint32Array.from([1]), src: Buffer.alloc(kv.chunkBytes) }])).rejects.toThrow(/shrank/);
    await kv.close();
  });

  test('a file removed after registration fails the copy', async () => {
    const fx = fixture();
    const kv = new RegisteredKv(fx.spec);
    rmSync(fx.files[0]);
    await expect(kv.gather([{ blockIds: Uint32Array.from([1]), dst: Buffer.alloc(kv.chunkBytes) }])).rejects.toThrow(/removed by its owner/);
    await kv.close();
  });

  test('truncation racing a large copy ends in a settled promise, never SIGBUS', async () => {
    // Truncating at once is mostly caught by the fstat check; one turn of the
    // event loop later the copy threads are usually mid-memcpy (SIGBUS guard).
    const big: Shape = { layers: 4, numBlocks: 64, blockSize: 16, heads: 8, headDim: 128, elemBytes: 2, chunkTokens: 1024 };
    for (let round = 0; round < 8; round++) {
      const fx = fixture(packed, big);
      const kv = new RegisteredKv(fx.spec);
      const dst = Buffer.alloc(kv.chunkBytes);
      const p = kv.gather([{ blockIds: Uint32Array.from({ length: 64 }, (_, i) => i), dst }]);
      if (round >= 2) await new Promise((resolve) => setImmediate(resolve));
      const fd = openSync(fx.files[0], 'r+');
      ftruncateSync(fd, round % 2 === 0 ? 0 : 1 << 20);
      closeSync(fd);
      const outcome = await p.then(() => 'copied', (e: unknown) => (e instanceof RegionUnavailableError ? 'unavailable' : String(e)));
      expect(['copied', 'unavailable']).toContain(outcome);
      await kv.close();
      fx.cleanup();
    }
  });

  test('close() while copies are in flight waits for them, then refuses new ones', async () => {
    const big: Shape = { layers: 2, numBlocks: 64, blockSize: 16, heads: 8, headDim: 128, elemBytes: 2, chunkTokens: 1024 };
    const fx = fixture(packed, big);
    const kv = new RegisteredKv(fx.spec);
    const dsts = [Buffer.alloc(kv.chunkBytes), Buffer.alloc(kv.chunkBytes)];
    const ids = Uint32Array.from({ length: 64 }, (_, i) => i);
    const events: string[] = [];
    const copies = dsts.map((dst, i) => kv.gather([{ blockIds: ids, dst }]).then(() => events.push(`copy${i}`)));
    const closed = kv.close().then(() => events.push('closed'));
    await expect(kv.gather([{ blockIds: ids, dst: dsts[0] }])).rejects.toThrow(/registration is closed/);
    await Promise.all([...copies, closed]);
    expect(events[events.length - 1]).toBe('closed');
    expect(dsts[0].equals(dsts[1])).toBe(true);
    expect(dsts[0].equals(expectedChunk(fx, fx.read(), [...ids]))).toBe(true);
  });
});

describe('leaving while copies run', () => {
  const here = dirname(fileURLToPath(import.meta.url));
  const addon = join(here, '..', '..', 'build', 'Release', 'kvtier_native.node');
  test.each([
    ['exit', /^exit$/],
    ['worker', /^worker terminated$/],
    ['natural', /^natural 16$/],
  ])('%s: the process ends cleanly', (mode, out) => {
    const r = spawnSync(process.execPath, [join(here, 'fixtures', 'exit-in-flight.mjs'), addon, mode], { encoding: 'utf8', timeout: 20_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toMatch(out);
  });
});
