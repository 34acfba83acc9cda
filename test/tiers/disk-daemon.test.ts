/**
 * The disk tier in real daemons: chunks and Put/Get values outlive a restart
 * (in-process close, and SIGTERM of a `kvtier start` child), a kill -9 during
 * writes leaves only complete chunks served (and every byte served right),
 * a chunk pushed out of host RAM is a disk hit, promoted on retrieve, a chunk
 * read from Valkey is kept on disk too, a tiny
 * max_local_disk_size skips stores without harm, and two daemons cannot share
 * one directory (exit 2, KVT_DISK_LOCKED).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readdirSync, truncateSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packageRoot, spawnDaemon } from '../../bench/daemon-process.js';
import { packTokens } from '../../src/chunking/tokens.js';
import type { DaemonStats } from '../../src/daemon.js';
import { KvtierClient } from '../../src/protocol/client.js';
import { startValkey, stopAllValkey } from '../../bench/valkey-server.js';
import { startTestDaemon } from '../helpers/daemon.js';
import { diskDir, removeDiskDirs } from './disk-helpers.js';

afterAll(removeDiskDirs);

const fp = { model: 'disk-model', dtype: 'bfloat16', kvLayout: 'test' };
const tokens = (n: number, seed: number): Buffer => packTokens(Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729) % 128_000));
const chunkBytes = 96 * 1024 + 5;

interface Prompt { tokens: Buffer; chunks: Buffer[] }
const prompt = (seed: number, n = 3): Prompt => ({ tokens: tokens(n * 256, seed), chunks: Array.from({ length: n }, () => randomBytes(chunkBytes)) });

/** Looks the prompt up and retrieves it; the chunks served, each checked against what was stored. */
async function served(c: KvtierClient, p: Prompt): Promise<{ hit: number; host: number; wrong: number }> {
  const l = await c.lookup({ tokens: p.tokens });
  if (l.hitChunks === 0) return { hit: 0, host: 0, wrong: 0 };
  const r = await c.retrieve({ leaseId: l.leaseId });
  let wrong = 0;
  r.chunks.forEach((got, i) => {
    if (got.length > 0 && !Buffer.from(got).equals(p.chunks[i])) wrong++;
  });
  await c.releaseLease(l.leaseId).catch(() => {});
  return { hit: r.loadedChunks, host: l.hostChunks, wrong };
}

describe('disk tier in a daemon', () => {
  it('serves chunks and values byte-exact after a restart, from disk, and promotes them to host', async () => {
    const disk = diskDir();
    const a = await startTestDaemon({ local_disk: `file://${disk}/`, max_local_disk_size: 0.5 });
    const ca = await a.connect({ fingerprint: fp });
    const prompts = [prompt(1), prompt(2, 5)];
    for (const p of prompts) await (await ca.store({ address: { tokens: p.tokens }, chunks: p.chunks })).committed;
    const values = [Buffer.alloc(0), randomBytes(10), randomBytes(300_001)];
    for (const [i, v] of values.entries()) await ca.put(Buffer.from(`page-${i}`), v);
    await a.daemon.manager.drain();
    // The empty value too: a header-only file.
    expect(a.daemon.stats().disk).toMatchObject({ entries: 8 + values.length });
    await a.stop();

    const b = await startTestDaemon({ local_disk: disk, max_local_disk_size: 0.5 });
    try {
      expect(b.daemon.stats().disk).toMatchObject({ rebuiltEntries: 8 + values.length, corrupt: 0 });
      const cb = await b.connect({ fingerprint: fp });
      const l = await cb.lookup({ tokens: prompts[1].tokens }, { noLease: true });
      expect(l).toMatchObject({ hitChunks: 5, hostChunks: 0, diskChunks: 5, valkeyChunks: 0 });
      for (const p of prompts) expect(await served(cb, p)).toEqual({ hit: p.chunks.length, host: 0, wrong: 0 });
      // Retrieved once from disk, now promoted: host hits.
      expect((await cb.lookup({ tokens: prompts[0].tokens }, { noLease: true })).hostChunks).toBe(3);
      for (const [i, v] of values.entries()) {
        const got = await cb.get(Buffer.from(`page-${i}`));
        expect(got?.equals(v), `page-${i}`).toBe(true);
      }
      expect((await cb.exists([Buffer.from('page-2'), Buffer.from('nope')])).found).toEqual([true, false]);
      const s = b.daemon.stats().disk!;
      expect(s.hits).toBe(8 + values.length);
      expect(s.promoted).toBe(s.hits);
      expect(b.daemon.stats().counters.diskHitChunks).toBeGreaterThanOrEqual(8);
    } finally {
      await b.stop();
    }
  });

  it('a chunk file truncated or overwritten behind the daemon is a miss (the worker recomputes it), deleted and counted', async () => {
    const disk = diskDir();
    const a = await startTestDaemon({ local_disk: disk });
    const p = prompt(7, 3);
    await (await (await a.connect({ fingerprint: fp })).store({ address: { tokens: p.tokens }, chunks: p.chunks })).committed;
    await a.stop();
    const b = await startTestDaemon({ local_disk: disk });
    try {
      const files = readdirSync(disk, { recursive: true }).map(String).filter((f) => f.endsWith('.kvc')).map((f) => join(disk, f));
      expect(files).toHaveLength(3);
      truncateSync(files[0], 8192);
      const fd = openSync(files[1], 'r+');
      writeSync(fd, Buffer.from('not the bytes you stored'), 0, 24, 4096 + 1000);
      closeSync(fd);
      const c = await b.connect({ fingerprint: fp });
      const r = await served(c, p);
      expect(r).toEqual({ hit: 1, host: 0, wrong: 0 });
      const s = b.daemon.stats().disk!;
      expect(s.corrupt).toBe(2);
      expect(s.entries).toBe(1);
    } finally {
      await b.stop();
    }
  });

  it('keeps a chunk pushed out of host RAM on disk, and serves it from there', async () => {
    const d = await startTestDaemon({ local_disk: diskDir(), max_local_cpu_size: 0.002 });
    try {
      const c = await d.connect({ fingerprint: fp });
      const first = prompt(10, 2);
      await (await c.store({ address: { tokens: first.tokens }, chunks: first.chunks })).committed;
      await d.daemon.manager.drain();
      for (let s = 11; s < 40; s++) {
        const p = prompt(s, 2);
        await (await c.store({ address: { tokens: p.tokens }, chunks: p.chunks })).committed;
      }
      await d.daemon.manager.drain();
      const stats = d.daemon.stats();
      expect(stats.host.evictions).toBeGreaterThan(0);
      expect((await c.lookup({ tokens: first.tokens }, { noLease: true })).hostChunks).toBe(0);
      expect(await served(c, first)).toEqual({ hit: 2, host: 0, wrong: 0 });
    } finally {
      await d.stop();
    }
  });

  it('a chunk served from Valkey is kept on local disk too: after a restart with Valkey gone it is a disk hit', async () => {
    const valkey = await startValkey();
    const disk = diskDir();
    const p = prompt(7, 4);
    try {
      // Another daemon of the fleet stored it; this one only ever read it from Valkey.
      const a = await startTestDaemon({ remote_url: valkey.url, key_prefix: 'dv' });
      const ca = await a.connect({ fingerprint: fp });
      await (await ca.store({ address: { tokens: p.tokens }, chunks: p.chunks })).committed;
      await a.stop();
      const b = await startTestDaemon({ remote_url: valkey.url, key_prefix: 'dv', local_disk: disk, max_local_disk_size: 0.5 });
      const cb = await b.connect({ fingerprint: fp });
      expect(await served(cb, p)).toEqual({ hit: 4, host: 0, wrong: 0 });
      await b.daemon.manager.drain();
      expect(b.daemon.stats().disk).toMatchObject({ entries: 4 });
      await b.stop();
    } finally {
      await stopAllValkey();
    }
    const c = await startTestDaemon({ local_disk: disk, max_local_disk_size: 0.5 });
    try {
      const cc = await c.connect({ fingerprint: fp });
      expect(await served(cc, p)).toEqual({ hit: 4, host: 0, wrong: 0 });
      expect(c.daemon.stats().disk).toMatchObject({ hits: 4 });
    } finally {
      await c.stop();
    }
  });

  it('with a tiny max_local_disk_size, evicts and skips disk stores and keeps serving from host', async () => {
    const d = await startTestDaemon({ local_disk: diskDir(), max_local_disk_size: 0.0003 }); // ~315 KiB: 3 chunk files
    try {
      const c = await d.connect({ fingerprint: fp });
      const ps = [prompt(30), prompt(31)];
      // One prompt at a time: writes in flight hold their room, so a burst beyond the
      // tier is skipped (counted) rather than evicting what is still being written.
      for (const p of ps) {
        await (await c.store({ address: { tokens: p.tokens }, chunks: p.chunks })).committed;
        await d.daemon.manager.drain();
      }
      await c.put(Buffer.from('big'), randomBytes(400_000));
      await d.daemon.manager.drain();
      const s = d.daemon.stats().disk!;
      expect(s.usedBytes).toBeLessThanOrEqual(s.capacityBytes);
      expect(s.evictions).toBeGreaterThan(0);
      expect(s.skippedFull).toBeGreaterThanOrEqual(1);
      for (const p of ps) expect(await served(c, p)).toMatchObject({ hit: 3, wrong: 0 });
      expect((await c.get(Buffer.from('big')))?.length).toBe(400_000);
      await c.ping();
    } finally {
      await d.stop();
    }
  });
});

describe('disk tier across kvtier start processes', () => {
  const cli = join(packageRoot(), 'dist/src/cli/main.js');
  const env = (disk: string): Record<string, string> => ({ KVTIER_LOCAL_DISK: disk, KVTIER_MAX_LOCAL_CPU_SIZE: '0.25', KVTIER_MAX_LOCAL_DISK_SIZE: '1' });

  it('SIGTERM, then a new daemon on the same local_disk serves every chunk byte-exact', async () => {
    const disk = diskDir();
    const a = await spawnDaemon(env(disk));
    const prompts = [prompt(40), prompt(41, 4)];
    const ca = await KvtierClient.connect({ path: a.socket, fingerprint: fp, timeoutMs: 10_000 });
    for (const p of prompts) await (await ca.store({ address: { tokens: p.tokens }, chunks: p.chunks })).committed;
    ca.destroy();
    expect(await a.stop('SIGTERM')).toBe(0);
    const b = await spawnDaemon(env(disk));
    try {
      const cb = await KvtierClient.connect({ path: b.socket, fingerprint: fp, timeoutMs: 10_000 });
      for (const p of prompts) expect(await served(cb, p)).toEqual({ hit: p.chunks.length, host: 0, wrong: 0 });
      cb.destroy();
    } finally {
      await b.stop();
    }
  });

  it('kill -9 during writes: after a restart what was complete is served, and nothing wrong ever is', async () => {
    const disk = diskDir();
    const a = await spawnDaemon(env(disk));
    const ca = await KvtierClient.connect({ path: a.socket, fingerprint: fp, timeoutMs: 10_000 });
    const stored: Prompt[] = [];
    let stop = false;
    const writer = (async () => {
      for (let s = 100; !stop; s++) {
        const p = { tokens: tokens(4 * 256, s), chunks: Array.from({ length: 4 }, () => randomBytes(1 << 20)) };
        try {
          await ca.store({ address: { tokens: p.tokens }, chunks: p.chunks });
          stored.push(p);
        } catch {
          return;
        }
      }
    })();
    for (;;) {
      const s = (await ca.stats()) as unknown as DaemonStats;
      if ((s.disk?.writes ?? 0) >= 8 && (s.disk?.queue.queuedJobs ?? 0) + (s.disk?.queue.inFlight ?? 0) > 0) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    a.child.kill('SIGKILL');
    stop = true;
    await writer;
    ca.destroy();
    await a.stop();
    const b = await spawnDaemon(env(disk));
    try {
      const cb = await KvtierClient.connect({ path: b.socket, fingerprint: fp, timeoutMs: 10_000 });
      const s = (await cb.stats()) as unknown as DaemonStats;
      let hit = 0;
      for (const p of stored) {
        const r = await served(cb, p);
        expect(r.wrong).toBe(0);
        hit += r.hit;
      }
      expect(hit).toBeGreaterThanOrEqual(8);
      // A chunk whose predecessor never reached the disk is on disk but not a prefix hit.
      expect(hit).toBeLessThanOrEqual(s.disk!.rebuiltEntries);
      cb.destroy();
    } finally {
      await b.stop();
    }
  }, 60_000);

  it('a second daemon on a local_disk in use exits 2 with KVT_DISK_LOCKED; an unusable one exits 2 naming local_disk', async () => {
    const disk = diskDir();
    const a = await spawnDaemon(env(disk));
    try {
      const run = (e: Record<string, string>): Promise<{ code: number; stderr: string }> => new Promise((resolve) => {
        execFile(process.execPath, [cli, 'start', '--socket', join(diskDir(), 's.sock')], { env: { ...process.env, KVTIER_CONFIG_FILE: '', LMCACHE_CONFIG_FILE: '', ...e }, timeout: 20_000 }, (err, _out, stderr) => {
          resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stderr });
        });
      });
      const second = await run(env(disk));
      expect(second.code).toBe(2);
      expect(second.stderr).toMatch(/KVT_DISK_LOCKED: .*kvtier\.lock is held by another process \(pid \d+\): two kvtier daemons cannot share one local_disk directory/);
      const missing = await run(env(join(disk, 'missing')));
      expect(missing.code).toBe(2);
      expect(missing.stderr).toMatch(/configuration error: local_disk: .*missing cannot be used: it does not exist/);
    } finally {
      await a.stop();
    }
  });
});
