/**
 * The disk tier on real files in a tmpdir: the tier contract, restart
 * (a new tier over the same directory serves byte-exact), files truncated,
 * overwritten or renamed behind its back (a miss, deleted, counted), LRU
 * eviction under a small max size, and page-aligned pool slabs (O_DIRECT).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, renameSync, statSync, truncateSync, writeFileSync, openSync, writeSync, closeSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { NativePool } from '../../native/index.js';
import { headerChecksum } from '../../src/tiers/checksum.js';
import { chunkPath, fileBytes } from '../../src/tiers/disk-format.js';
import type { DiskTier } from '../../src/tiers/disk-tier.js';
import { randomChunkKey, runTierContract } from './tier-contract.js';
import { diskDir, openDisk, removeDiskDirs } from './disk-helpers.js';

afterAll(removeDiskDirs);

runTierContract('disk (direct auto)', () => openDisk(diskDir()), { maxBytes: 10 * (1 << 20) + 3 });
runTierContract('disk (buffered)', () => openDisk(diskDir(), { direct: false }), { maxBytes: 3 << 20 });

const NS = 'a'.repeat(32);
const open: DiskTier[] = [];
afterEach(async () => {
  for (const t of open.splice(0)) await t.close();
});
async function tier(dir: string, o: Parameters<typeof openDisk>[1] = {}): Promise<DiskTier> {
  const t = await openDisk(dir, o);
  open.push(t);
  return t;
}

describe('disk tier', () => {
  it('serves every chunk byte-exact from a new tier over the same directory (restart)', async () => {
    const dir = diskDir();
    const first = await openDisk(dir);
    const chunks = [0, 1, 4095, 4096, 4097, (4 << 20) + 11].map((n) => ({ key: randomChunkKey(NS), bytes: randomBytes(n) }));
    for (const c of chunks) expect(await first.put(c.key, c.bytes)).toBe(true);
    await first.close();
    const second = await tier(dir);
    expect(second.stats().rebuiltEntries).toBe(chunks.length);
    for (const c of chunks) {
      const got = await second.get(c.key);
      expect(got?.equals(c.bytes)).toBe(true);
    }
    expect(second.stats()).toMatchObject({ hits: chunks.length, corrupt: 0 });
  });

  it('reads into and writes from page-aligned pool slabs with O_DIRECT', async () => {
    const t = await tier(diskDir(), { direct: true });
    expect(t.direct).toBe(true);
    const pool = new NativePool(16 << 20);
    try {
      const src = pool.allocate((4 << 20) + 100)!;
      randomBytes(src.buf.length).copy(src.buf);
      const key = randomChunkKey(NS);
      expect(await t.write(key, src.buf)).toBe(true);
      const dst = pool.allocate(t.lengthOf(`${NS}:${key.hash}`)!)!;
      expect(await t.readInto(key, dst.buf)).toBe(true);
      expect(dst.buf.equals(src.buf)).toBe(true);
      src.release();
      dst.release();
    } finally {
      pool.close();
    }
  });

  it.each([
    ['truncated', (p: string) => truncateSync(p, statSync(p).size - 4096)],
    ['truncated to the header', (p: string) => truncateSync(p, 4096)],
    ['overwritten in the payload', (p: string) => { const fd = openSync(p, 'r+'); writeSync(fd, Buffer.from('garbage'), 0, 7, 8192); closeSync(fd); }],
    ['overwritten in the header', (p: string) => { const fd = openSync(p, 'r+'); writeSync(fd, Buffer.from('X'), 0, 1, 60); closeSync(fd); }],
    ['replaced by an empty file', (p: string) => writeFileSync(p, '')],
  ])('a file %s behind its back is a miss, deleted and counted', async (_what, damage) => {
    const dir = diskDir();
    const t = await tier(dir);
    const key = randomChunkKey(NS);
    expect(await t.put(key, randomBytes(64 << 10))).toBe(true);
    const path = chunkPath(dir, NS, key.hash);
    damage(path);
    expect(await t.get(key)).toBeNull();
    expect(t.stats().corrupt).toBe(1);
    expect(t.has(`${NS}:${key.hash}`)).toBe(false);
    await t.close();
    expect(existsSync(path)).toBe(false);
  });

  it('drops a format-1 file at start (xxh64 payload sum): deleted and counted, never served', async () => {
    const dir = diskDir();
    const t = await openDisk(dir);
    const key = randomChunkKey(NS);
    expect(await t.put(key, randomBytes(3 * 4096 + 9))).toBe(true);
    await t.close();
    // The same file with its header saying version 1, the header's own checksum made right again.
    const path = chunkPath(dir, NS, key.hash);
    const fd = openSync(path, 'r+');
    const head = Buffer.alloc(4096);
    readSync(fd, head, 0, 4096, 0);
    head.writeUInt32LE(1, 8);
    const sumAt = 52 + head.readUInt16LE(32) + head.readUInt16LE(34);
    head.write(headerChecksum(head.subarray(0, sumAt)), sumAt, 'latin1');
    writeSync(fd, head, 0, 4096, 0);
    closeSync(fd);
    const again = await tier(dir);
    expect(again.stats()).toMatchObject({ rebuiltEntries: 0, corrupt: 1 });
    expect(await again.get(key)).toBeNull();
    expect(existsSync(path)).toBe(false);
  });

  it('never hands out another namespace\'s chunk, even under its name', async () => {
    const dir = diskDir();
    const t = await tier(dir);
    const mine = randomChunkKey(NS);
    const theirs = { namespaceId: 'b'.repeat(32), hash: mine.hash };
    expect(await t.put(theirs, randomBytes(8192))).toBe(true);
    await t.close();
    open.length = 0;
    // Their file moved to where my chunk would live: the header still says whose it is.
    renameSync(chunkPath(dir, theirs.namespaceId, theirs.hash), chunkPath(dir, NS, mine.hash));
    const again = await tier(dir);
    expect(again.stats()).toMatchObject({ rebuiltEntries: 0, corrupt: 1 });
    expect(await again.get(mine)).toBeNull();
    expect(await again.get(theirs)).toBeNull();
  });

  it('at start, deletes damaged files and leftover temporary files, and leaves foreign files alone', async () => {
    const dir = diskDir();
    const t = await openDisk(dir);
    const good = randomChunkKey(NS);
    const torn = randomChunkKey(NS);
    await t.put(good, randomBytes(10_000));
    await t.put(torn, randomBytes(10_000));
    await t.close();
    const tornPath = chunkPath(dir, NS, torn.hash);
    truncateSync(tornPath, 5000);
    const tmp = `${chunkPath(dir, NS, randomChunkKey(NS).hash)}.123-4.tmp`;
    writeFileSync(tmp, 'half a write');
    const foreign = join(dir, 'ab', 'notes.txt');
    writeFileSync(foreign, 'mine');
    writeFileSync(join(dir, 'README'), 'mine too');
    const again = await tier(dir);
    expect(again.stats()).toMatchObject({ rebuiltEntries: 1, corrupt: 1, removedTemp: 1 });
    expect(existsSync(tornPath)).toBe(false);
    expect(existsSync(tmp)).toBe(false);
    expect(existsSync(foreign)).toBe(true);
    expect(existsSync(join(dir, 'README'))).toBe(true);
    expect((await again.get(good))?.length).toBe(10_000);
  });

  it('evicts the least recently used chunks to stay under its size, and skips a chunk bigger than the tier', async () => {
    const chunk = 1 << 20;
    const t = await tier(diskDir(), { capacityBytes: 4 * fileBytes(chunk) });
    const keys = Array.from({ length: 6 }, () => randomChunkKey(NS));
    for (const k of keys.slice(0, 4)) expect(await t.put(k, randomBytes(chunk))).toBe(true);
    expect(await t.get(keys[0])).not.toBeNull(); // keys[0] is now the most recent
    for (const k of keys.slice(4)) expect(await t.put(k, randomBytes(chunk))).toBe(true);
    const s = t.stats();
    expect(s.entries).toBe(4);
    expect(s.evictions).toBe(2);
    expect(s.usedBytes).toBeLessThanOrEqual(t.capacityBytes);
    expect(t.has(`${NS}:${keys[0].hash}`)).toBe(true);
    expect(t.has(`${NS}:${keys[1].hash}`)).toBe(false);
    expect(t.has(`${NS}:${keys[2].hash}`)).toBe(false);
    expect(await t.put(randomChunkKey(NS), randomBytes(5 * chunk))).toBe(false);
    expect(t.stats().skippedFull).toBe(1);
    await t.close();
    const files = readdirSync(t.dir, { recursive: true }).filter((f) => String(f).endsWith('.kvc'));
    expect(files).toHaveLength(4);
  });

  it('a restart over a smaller max size evicts down to it, oldest first', async () => {
    const dir = diskDir();
    const t = await openDisk(dir);
    const keys = Array.from({ length: 4 }, () => randomChunkKey(NS));
    for (const k of keys) {
      await t.put(k, randomBytes(64 << 10));
      await new Promise((r) => setTimeout(r, 15)); // distinct mtimes
    }
    await t.close();
    const small = await tier(dir, { capacityBytes: 2 * fileBytes(64 << 10) });
    expect(small.stats().entries).toBe(2);
    expect(small.has(`${NS}:${keys[3].hash}`)).toBe(true);
    expect(small.has(`${NS}:${keys[0].hash}`)).toBe(false);
  });

  it('with sync (fdatasync before the rename) stores and serves alike', async () => {
    const t = await tier(diskDir(), { sync: true });
    const key = randomChunkKey(NS);
    const bytes = randomBytes(100_000);
    expect(await t.put(key, bytes)).toBe(true);
    expect((await t.get(key))?.equals(bytes)).toBe(true);
  });

  it('a chunk removed while its write is in flight is never indexed, and its file goes', async () => {
    const dir = diskDir();
    const t = await tier(dir);
    const key = randomChunkKey(NS);
    const writing = t.put(key, randomBytes(8 << 20));
    expect(t.remove(`${NS}:${key.hash}`)).toBe(true);
    expect(await writing).toBe(false);
    expect(t.has(`${NS}:${key.hash}`)).toBe(false);
    await t.close();
    expect(existsSync(chunkPath(dir, NS, key.hash))).toBe(false);
  });

  it('removes a namespace', async () => {
    const t = await tier(diskDir());
    const other = 'c'.repeat(32);
    await t.put(randomChunkKey(NS), randomBytes(100));
    await t.put(randomChunkKey(NS), randomBytes(100));
    await t.put(randomChunkKey(other), randomBytes(100));
    expect(t.removeNamespace(NS)).toBe(2);
    expect(t.stats().entries).toBe(1);
  });
});
