/**
 * The disk tier on filesystems that fail: one that refuses O_DIRECT (ramfs)
 * and one whose every operation is EIO (ext4 on a loop device, shut down
 * with EXT4_IOC_SHUTDOWN: the kernel's own EIO for every open, read and
 * write afterwards, the state ext4 enters after a failed journal write).
 * A third fails the block device under a read: ext4 on a loop device
 * (losetup --direct-io) whose backing file lives on a second ext4, which is
 * shut down while reads are in flight. The inner filesystem keeps working
 * (its opens and stats succeed from its caches) while every block request
 * the loop device has not served yet fails: EIO from preadv after a good
 * open, as a failing drive gives (device-mapper's error target is absent).
 * All need mount(2), so root with CAP_SYS_ADMIN; where mounting is refused
 * the tests skip and their names say why.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../bench/daemon-process.js';
import { DISK_BLOCK, DiskIo } from '../../native/disk-io.js';
import { NativePool } from '../../native/index.js';
import { packTokens } from '../../src/chunking/tokens.js';
import type { KvtierClient } from '../../src/protocol/client.js';
import { createLogger } from '../../src/log.js';
import { DiskTier } from '../../src/tiers/disk-tier.js';
import { encodeHeader } from '../../src/tiers/disk-format.js';
import { payloadChecksum } from '../../src/tiers/checksum.js';
import { startTestDaemon } from '../helpers/daemon.js';
import { openDisk } from './disk-helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'kvtier-diskfault-'));
const mounts: string[] = [];

/** Mounts with `args` at a fresh directory; the directory, or why it could not. */
function tryMount(name: string, args: string[]): { dir: string } | { why: string } {
  const dir = join(scratch, name);
  mkdirSync(dir);
  try {
    execFileSync('mount', [...args, dir], { stdio: 'pipe', timeout: 20_000 });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    return { why: (err.stderr?.toString().trim() || err.message).split('\n')[0] };
  }
  mounts.push(dir);
  return { dir };
}

afterAll(() => {
  for (const m of mounts.splice(0).reverse()) {
    try {
      execFileSync('umount', [m], { stdio: 'pipe', timeout: 20_000 });
    } catch {
      execFileSync('umount', ['-l', m], { stdio: 'pipe', timeout: 20_000 });
    }
  }
  rmSync(scratch, { recursive: true, force: true });
});

const ramfs = tryMount('ramfs', ['-t', 'ramfs', 'ramfs']);

function ext4Loop(): { dir: string } | { why: string } {
  const img = join(scratch, 'ext4.img');
  try {
    execFileSync('truncate', ['-s', '64M', img], { timeout: 20_000 });
    execFileSync('mkfs.ext4', ['-q', '-F', img], { stdio: 'pipe', timeout: 60_000 });
  } catch (e) {
    return { why: `mkfs.ext4 failed: ${(e as Error).message.split('\n')[0]}` };
  }
  return tryMount('ext4', ['-o', 'loop', img]);
}
const ext4 = ext4Loop();

/** EXT4_IOC_SHUTDOWN(EXT4_GOING_FLAGS_NOLOGFLUSH): from here on the kernel answers EIO for every file operation there. */
function shutDown(dir: string): void {
  execFileSync('/usr/bin/python3', ['-c', [
    'import fcntl, os, struct, sys',
    'fd = os.open(sys.argv[1], os.O_RDONLY)',
    'fcntl.ioctl(fd, 0x8004587d, struct.pack("I", 2))',
  ].join('\n'), dir], { stdio: 'pipe', timeout: 20_000 });
}

/**
 * ext4 on a direct-I/O loop device whose image is a file on an outer ext4
 * (itself on a loop device). Shutting `outerDir` down makes every read the
 * inner device has not served yet EIO. A fresh pair per call.
 */
interface NestedExt4 { dir: string; outerDir: string; close(): void }
let nestedCount = 0;
function nestedExt4(): NestedExt4 | { why: string } {
  const n = ++nestedCount;
  const outerImg = join(scratch, `outer-${n}.img`);
  try {
    execFileSync('truncate', ['-s', '320M', outerImg], { timeout: 20_000 });
    execFileSync('mkfs.ext4', ['-q', '-F', outerImg], { stdio: 'pipe', timeout: 60_000 });
  } catch (e) {
    return { why: `mkfs.ext4 failed: ${(e as Error).message.split('\n')[0]}` };
  }
  const outer = tryMount(`outer-${n}`, ['-o', 'loop', outerImg]);
  if ('why' in outer) return outer;
  const innerImg = join(outer.dir, 'inner.img');
  let dev: string;
  try {
    execFileSync('truncate', ['-s', '280M', innerImg], { timeout: 20_000 });
    dev = execFileSync('losetup', ['-f', '--show', '--direct-io=on', innerImg], { stdio: 'pipe', timeout: 20_000 }).toString().trim();
  } catch (e) {
    return { why: `losetup --direct-io failed: ${(e as Error).message.split('\n')[0]}` };
  }
  execFileSync('mkfs.ext4', ['-q', '-F', dev], { stdio: 'pipe', timeout: 60_000 });
  const inner = tryMount(`inner-${n}`, [dev]);
  if ('why' in inner) return inner;
  return {
    dir: inner.dir,
    outerDir: outer.dir,
    close: () => {
      // The inner mount comes off first (afterAll unmounts what is left in reverse order), then its loop device.
      execFileSync('umount', ['-l', inner.dir], { stdio: 'pipe', timeout: 20_000 });
      mounts.splice(mounts.indexOf(inner.dir), 1);
      execFileSync('losetup', ['-d', dev], { stdio: 'pipe', timeout: 20_000 });
    },
  };
}

/**
 * A shutdown armed ahead of time: a python process that has the directory
 * open and waits for one line, so the ioctl lands within a fraction of a
 * millisecond of the call, not after an interpreter start.
 */
async function armShutDown(dir: string): Promise<{ fire(): void; done: Promise<void> }> {
  const py = spawn('/usr/bin/python3', ['-c', [
    'import fcntl, os, struct, sys',
    'fd = os.open(sys.argv[1], os.O_RDONLY)',
    'print("armed", flush=True)',
    'sys.stdin.readline()',
    'fcntl.ioctl(fd, 0x8004587d, struct.pack("I", 2))',
  ].join('\n'), dir], { stdio: ['pipe', 'pipe', 'inherit'], timeout: 20_000 });
  const done = new Promise<void>((resolve, reject) => py.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`shutdown helper exited ${code}`)))));
  await new Promise<void>((resolve, reject) => {
    py.stdout.once('data', () => resolve());
    py.once('error', reject);
  });
  return { fire: () => py.stdin.end('go\n'), done };
}

const cli = join(packageRoot(), 'dist', 'src', 'cli', 'main.js');
const fp = { model: 'disk-fault-model', dtype: 'bfloat16', kvLayout: 'test' };
const prompt = (seed: number, n: number): { tokens: Buffer; chunks: Buffer[] } => ({
  tokens: packTokens(Array.from({ length: n * 256 }, (_, i) => (i * 7919 + seed * 104729) % 128_000)),
  chunks: Array.from({ length: n }, () => randomBytes(200 * 1024 + 3)),
});

async function served(c: KvtierClient, p: { tokens: Buffer; chunks: Buffer[] }): Promise<{ hit: number; disk: number; loaded: number; wrong: number }> {
  const l = await c.lookup({ tokens: p.tokens });
  if (l.hitChunks === 0) return { hit: 0, disk: 0, loaded: 0, wrong: 0 };
  const r = await c.retrieve({ leaseId: l.leaseId });
  let wrong = 0;
  r.chunks.forEach((got, i) => {
    if (got.length > 0 && !Buffer.from(got).equals(p.chunks[i])) wrong++;
  });
  await c.releaseLease(l.leaseId).catch(() => {});
  return { hit: l.hitChunks, disk: l.diskChunks, loaded: r.loadedChunks, wrong };
}

const skipWhy = (m: { dir: string } | { why: string }): string => ('why' in m ? ` (skipped: cannot mount here: ${m.why})` : '');

describe('disk tier on failing filesystems', () => {
  it.skipIf('why' in ramfs)(`a filesystem that refuses O_DIRECT (ramfs): disk_direct_io: true is exit 2 naming local_disk; auto falls back to the page cache${skipWhy(ramfs)}`, async () => {
    const dir = (ramfs as { dir: string }).dir;
    const start = (direct: string): Promise<{ code: number; stderr: string }> => new Promise((resolve) => {
      execFile(process.execPath, [cli, 'start', '--socket', join(scratch, 'ramfs.sock')], {
        env: { ...process.env, KVTIER_CONFIG_FILE: '', LMCACHE_CONFIG_FILE: '', KVTIER_LOCAL_DISK: `file://${dir}/`, KVTIER_DISK_DIRECT_IO: direct, KVTIER_MAX_LOCAL_CPU_SIZE: '0.1' },
        timeout: 20_000,
      }, (err, _out, stderr) => resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stderr }));
    });
    const refused = await start('true');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(new RegExp(`configuration error: local_disk: ${dir}/? cannot be used: the filesystem refuses O_DIRECT .*set disk_direct_io: false`));

    // Linux creates an O_CREAT file before it refuses O_DIRECT: neither the
    // refused probe above nor a refused write may leave one behind to break the next try.
    expect(readdirSync(dir)).toEqual([]);
    const io = new DiskIo(1);
    // Pool slabs are page aligned: the only buffers the addon tries O_DIRECT with.
    const pool = new NativePool(1 << 20);
    try {
      const src = pool.allocate(3 * DISK_BLOCK + 5)!.buf;
      const payload = randomBytes(src.length);
      payload.copy(src);
      const h = encodeHeader('a'.repeat(32), 'b'.repeat(64), payload.length);
      const path = join(dir, 'direct-asked.kvc');
      expect(await io.writeChunk({ tmpPath: `${path}.1-1.tmp`, finalPath: path, header: h.header, payload: src, sumOffset: h.sumOffset, headerSumOffset: h.headerSumOffset, direct: true, sync: false })).toEqual({ direct: false });
      const back = pool.allocate(payload.length)!.buf;
      expect(await io.readChunk(path, back, { direct: true })).toMatchObject({ complete: true, direct: false, sum: payloadChecksum(payload) });
      expect(back.equals(payload)).toBe(true);
      expect(readdirSync(dir)).toEqual(['direct-asked.kvc']);
      rmSync(path);
    } finally {
      io.close();
      pool.close();
    }
    const t = await openDisk(dir, { direct: 'auto' });
    try {
      expect(t.stats().direct).toBe(false);
    } finally {
      await t.close();
    }
    const d = await startTestDaemon({ local_disk: dir, disk_direct_io: 'auto' });
    try {
      const c = await d.connect({ fingerprint: fp });
      const p = prompt(1, 2);
      await (await c.store({ address: { tokens: p.tokens }, chunks: p.chunks })).committed;
      await d.daemon.manager.drain();
      expect(d.daemon.stats().disk).toMatchObject({ direct: false, entries: 2, ioErrors: 0 });
    } finally {
      await d.stop();
    }
  });

  it.skipIf('why' in ext4)(`EIO from the filesystem (ext4 on a loop device, shut down): stores skip the disk and are counted, disk hits become misses, the daemon keeps serving${skipWhy(ext4)}`, async () => {
    const dir = (ext4 as { dir: string }).dir;
    const a = await startTestDaemon({ local_disk: dir, disk_direct_io: true });
    const before = prompt(2, 3);
    try {
      const c = await a.connect({ fingerprint: fp });
      await (await c.store({ address: { tokens: before.tokens }, chunks: before.chunks })).committed;
      await a.daemon.manager.drain();
      expect(a.daemon.stats().disk).toMatchObject({ direct: true, entries: 3 });
    } finally {
      await a.stop();
    }
    // A new daemon: host tier empty, the index rebuilt from the disk; then every file operation fails.
    const b = await startTestDaemon({ local_disk: dir, disk_direct_io: true });
    try {
      expect(b.daemon.stats().disk).toMatchObject({ rebuiltEntries: 3 });
      shutDown(dir);
      const c = await b.connect({ fingerprint: fp });
      // The index still names the chunks; each read fails with EIO and is a miss, never wrong bytes.
      const r = await served(c, before);
      expect(r).toMatchObject({ hit: 3, disk: 3, wrong: 0 });
      expect(r.loaded).toBe(0);
      expect(b.daemon.stats().disk!.ioErrors).toBeGreaterThanOrEqual(1);
      // New stores reach the host tier and are served from it; their disk writes fail and are counted.
      const after = prompt(3, 2);
      const errorsBefore = b.daemon.stats().disk!.ioErrors;
      await (await c.store({ address: { tokens: after.tokens }, chunks: after.chunks })).committed;
      await b.daemon.manager.drain();
      const s = b.daemon.stats().disk!;
      expect(s.ioErrors).toBeGreaterThanOrEqual(errorsBefore + 2);
      expect(s.writes).toBe(0);
      expect(await served(c, after)).toEqual({ hit: 2, disk: 0, loaded: 2, wrong: 0 });
      expect(b.daemon.stats().disk!.ioErrors, 'stats after the faults').toBeGreaterThan(0);
    } finally {
      await b.stop();
    }
  });

  const probe = nestedExt4();
  if (!('why' in probe)) probe.close();
  it.skipIf('why' in probe)(`EIO from the block device in the middle of reads that opened fine (ext4 on a loop device whose backing file's filesystem is shut down as they run), repeated: every read is byte-exact or a miss, each miss is counted, the tier keeps answering${skipWhy(probe as { dir: string } | { why: string })}`, async () => {
    const MiB = 1 << 20;
    const count = 16;
    const size = 8 * MiB;
    const pool = new NativePool(2 * count * size + 4 * MiB);
    const src = Array.from({ length: count }, () => pool.allocate(size)!);
    const dst = Array.from({ length: count }, () => pool.allocate(size)!);
    src.forEach((s) => randomBytes(size).copy(s.buf));
    const keys = src.map((_, i) => ({ namespaceId: 'c'.repeat(32), hash: (i + 1).toString(16).padStart(64, '0') }));
    let failedReads = 0;
    let failedAfterOpen = 0;
    try {
      // The shutdown lands earlier or later in the reads each time: some runs
      // catch reads whose first block requests were served and later ones not.
      for (const fraction of [0.15, 0.35, 0.55]) {
        const fs = nestedExt4() as NestedExt4;
        const warnings: string[] = [];
        const logger = createLogger('warn', {}, (line) => warnings.push(line));
        const tier = await DiskTier.open({ dir: fs.dir, capacityBytes: 256 * MiB, ioThreads: 4, direct: true, logger });
        try {
          expect(await Promise.all(keys.map((k, i) => tier.write(k, src[i].buf)))).toEqual(keys.map(() => true));
          // An undisturbed read first: every chunk comes back, and its time places the shutdown.
          const t0 = performance.now();
          expect(await Promise.all(keys.map((k, i) => tier.readInto(k, dst[i].buf)))).toEqual(keys.map(() => true));
          const readMs = performance.now() - t0;
          expect(dst.every((d, i) => d.buf.equals(src[i].buf))).toBe(true);
          dst.forEach((d) => d.buf.fill(0));
          const shutdown = await armShutDown(fs.outerDir);
          const reads = Promise.all(keys.map((k, i) => tier.readInto(k, dst[i].buf)));
          setTimeout(shutdown.fire, readMs * fraction);
          const got = await reads;
          await shutdown.done;
          got.forEach((hit, i) => {
            if (hit) expect(dst[i].buf.equals(src[i].buf), `chunk ${i} at ${fraction}`).toBe(true);
          });
          const misses = got.filter((hit) => !hit).length;
          const s = tier.stats();
          expect(s.ioErrors, `at ${fraction}`).toBe(misses);
          expect(s.entries, 'a chunk whose read failed leaves the index').toBe(count - misses);
          failedReads += misses;
          // "EIO: read <path>": the open (and the size check) had succeeded.
          failedAfterOpen += warnings.filter((w) => w.includes('EIO: read ')).length;
          // Still answering: a failed chunk is a plain miss now, a new store is skipped and counted.
          const gone = got.findIndex((hit) => !hit);
          if (gone >= 0) expect(await tier.readInto(keys[gone], dst[gone].buf)).toBe(false);
          const before = tier.stats();
          expect(await tier.write({ namespaceId: 'c'.repeat(32), hash: 'f'.repeat(64) }, src[0].buf)).toBe(false);
          expect(tier.stats().ioErrors + tier.stats().skippedFull).toBe(before.ioErrors + before.skippedFull + 1);
        } finally {
          await tier.close();
          fs.close();
        }
      }
    } finally {
      src.forEach((s) => s.release());
      dst.forEach((d) => d.release());
      pool.close();
    }
    // The fault must have landed under reads, or this test proved nothing.
    expect(failedReads).toBeGreaterThan(0);
    expect(failedAfterOpen).toBe(failedReads);
  }, 120_000);

  it.skipIf('why' in probe)(`the same block-device EIO under a daemon's disk reads (a Lookup's prefetch after a restart): every chunk retrieved is byte-exact or reported failed, the failures are counted, the daemon keeps serving${skipWhy(probe as { dir: string } | { why: string })}`, async () => {
    const fs = nestedExt4() as NestedExt4;
    const big = { tokens: prompt(4, 24).tokens, chunks: Array.from({ length: 24 }, () => randomBytes(4 << 20)) };
    try {
      const a = await startTestDaemon({ local_disk: fs.dir, disk_direct_io: true });
      try {
        const c = await a.connect({ fingerprint: fp });
        await (await c.store({ address: { tokens: big.tokens }, chunks: big.chunks })).committed;
        await a.daemon.manager.drain();
        expect(a.daemon.stats().disk).toMatchObject({ entries: 24, ioErrors: 0 });
      } finally {
        await a.stop();
      }
      // Restarted: the host tier is empty, so every hit is a disk read, started when the Lookup is answered.
      const b = await startTestDaemon({ local_disk: fs.dir, disk_direct_io: true });
      try {
        const c = await b.connect({ fingerprint: fp });
        const shutdown = await armShutDown(fs.outerDir);
        // Fired as the Lookup is sent, not once it is answered: the daemon answers from its
        // in-memory index and then reads 96 MiB, and on a loaded machine those reads could all
        // finish before a shutdown fired after the answer (this test once passed vacuously so).
        const asked = c.lookup({ tokens: big.tokens });
        shutdown.fire();
        const l = await asked;
        await shutdown.done;
        expect(l).toMatchObject({ hitChunks: 24, diskChunks: 24 });
        const r = await c.retrieve({ leaseId: l.leaseId });
        let loaded = 0;
        r.chunks.forEach((got, i) => {
          if (got.length === 0) return;
          expect(Buffer.from(got).equals(big.chunks[i]), `chunk ${i}`).toBe(true);
          loaded++;
        });
        expect(r.loadedChunks).toBe(loaded);
        await c.releaseLease(l.leaseId);
        const s = b.daemon.stats().disk!;
        // The fault must have caught reads, or this proved nothing; each one is counted.
        expect(loaded).toBeLessThan(24);
        expect(s.ioErrors).toBe(24 - loaded);
        expect(s.entries).toBe(loaded);
        // Still serving: a new prompt is stored to the host tier (its disk write fails, counted) and retrieved exact.
        const after = prompt(5, 2);
        await (await c.store({ address: { tokens: after.tokens }, chunks: after.chunks })).committed;
        await b.daemon.manager.drain();
        expect(await served(c, after)).toEqual({ hit: 2, disk: 0, loaded: 2, wrong: 0 });
        expect(b.daemon.stats().disk!.ioErrors + b.daemon.stats().disk!.skippedFull).toBeGreaterThanOrEqual(24 - loaded + 2);
      } finally {
        await b.stop();
      }
    } finally {
      fs.close();
    }
  }, 120_000);
});
