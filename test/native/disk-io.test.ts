/**
 * The addon's disk I/O (native/disk-io.ts, native/src/disk/): jobs run on
 * the DiskIo's own threads while the JS thread keeps turning, errors come
 * back as DiskIoError with the errno name, bad arguments are refused before
 * anything runs, and the chunk file layout is header block + padded payload.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DISK_BLOCK, DiskIo } from '../../native/disk-io.js';
import { NativePool } from '../../native/index.js';
import { BadRequestError, DiskIoError, diskErrno } from '../../src/errors.js';
import { decodeHeader, encodeHeader, fileBytes } from '../../src/tiers/disk-format.js';
import { payloadChecksum } from '../../src/tiers/checksum.js';

const dir = mkdtempSync(join(tmpdir(), 'kvtier-diskio-'));
const io = new DiskIo(2);
afterAll(() => {
  io.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('DiskIo', () => {
  it('has the threads it was asked for and refuses a silly count', () => {
    expect(io.threads).toBe(2);
    expect(() => new DiskIo(0)).toThrow(BadRequestError);
  });

  it('writes header block + padded payload, fills both checksums, and reads it back', async () => {
    const payload = randomBytes(3 * DISK_BLOCK + 17);
    const h = encodeHeader('f'.repeat(32), 'e'.repeat(64), payload.length);
    const path = join(dir, 'one.kvc');
    await io.writeChunk({ tmpPath: `${path}.1-1.tmp`, finalPath: path, header: h.header, payload, sumOffset: h.sumOffset, headerSumOffset: h.headerSumOffset, direct: false, sync: false });
    expect(statSync(path).size).toBe(fileBytes(payload.length));
    const onDisk = readFileSync(path);
    const head = decodeHeader(onDisk.subarray(0, DISK_BLOCK));
    expect(head).toMatchObject({ namespaceId: 'f'.repeat(32), hash: 'e'.repeat(64), length: payload.length, payloadSum: payloadChecksum(payload) });
    expect(onDisk.subarray(DISK_BLOCK, DISK_BLOCK + payload.length).equals(payload)).toBe(true);
    const dest = Buffer.alloc(payload.length);
    const r = await io.readChunk(path, dest, { direct: false });
    expect(r).toMatchObject({ complete: true, sum: payloadChecksum(payload) });
    expect(dest.equals(payload)).toBe(true);
  });

  it.each([
    ['through the page cache (heap buffers)', false],
    ['with O_DIRECT (page-aligned pool slabs)', true],
  ])('moves a payload and its tail block in one transfer each way %s: every length around a block edge is byte-exact with its XXH3 sum', async (_how, direct) => {
    const MiB = 1 << 20;
    const pool = new NativePool(64 * MiB);
    // 21 MiB + 17: larger than one block-layer request (max_sectors_kb), with a tail.
    for (const length of [0, 1, DISK_BLOCK, MiB - 1, MiB, MiB + 1, MiB + DISK_BLOCK, 3 * MiB + 17, 21 * MiB + 17]) {
      const payload = direct ? pool.allocate(Math.max(1, length))!.buf.subarray(0, length) : Buffer.alloc(length);
      randomBytes(length).copy(payload);
      const h = encodeHeader('f'.repeat(32), 'd'.repeat(64), length);
      const path = join(dir, `piece-${length}-${direct}.kvc`);
      await io.writeChunk({ tmpPath: `${path}.1-1.tmp`, finalPath: path, header: h.header, payload, sumOffset: h.sumOffset, headerSumOffset: h.headerSumOffset, direct, sync: false });
      const onDisk = readFileSync(path);
      expect(onDisk.length, `${length}`).toBe(fileBytes(length));
      expect(decodeHeader(onDisk.subarray(0, DISK_BLOCK)), `${length}`).toMatchObject({ length, payloadSum: payloadChecksum(payload) });
      const dest = direct ? pool.allocate(Math.max(1, length))!.buf.subarray(0, length) : Buffer.alloc(length);
      expect(await io.readChunk(path, dest, { direct }), `${length}`).toMatchObject({ complete: true, direct, sum: payloadChecksum(payload) });
      expect(dest.equals(payload), `${length}`).toBe(true);
    }
    pool.close();
  });

  it('runs off the JS thread: the event loop turns while 64 MiB are written and read', async () => {
    const big = Buffer.alloc(64 << 20, 3);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const path = join(dir, 'plain');
    await io.writePlain(path, big, 0, false);
    await io.readPlain(path, big, 0, { direct: false, dropCache: true });
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(0);
  });

  it('reports a missing file as DiskIoError ENOENT', async () => {
    const e = await io.readChunk(join(dir, 'nope'), Buffer.alloc(10), { direct: false }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DiskIoError);
    expect(diskErrno(e)).toBe('ENOENT');
    expect((e as DiskIoError).code).toBe('KVT_DISK_IO');
  });

  it('refuses a header that is not one block, before anything runs', () => {
    expect(() => io.writeChunk({ tmpPath: join(dir, 'x.tmp'), finalPath: join(dir, 'x'), header: Buffer.alloc(100), payload: Buffer.alloc(1), sumOffset: 0, headerSumOffset: 16, direct: false, sync: false })).toThrow(BadRequestError);
  });

  it('a write into a missing directory fails with ENOENT and leaves nothing', async () => {
    const e = await io.writeChunk({ tmpPath: join(dir, 'no', 'x.tmp'), finalPath: join(dir, 'no', 'x'), header: Buffer.alloc(DISK_BLOCK), payload: Buffer.alloc(1), sumOffset: 0, headerSumOffset: 16, direct: false, sync: false }).catch((x: unknown) => x);
    expect(diskErrno(e)).toBe('ENOENT');
  });
});
