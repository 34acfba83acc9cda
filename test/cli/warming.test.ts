/**
 * The daemon serves at once, whatever its pool size, and warms the pool in
 * the background (src/daemon.ts, native/src/pool.h "Warming"); a pool it
 * cannot have stops it with exit 2. Real `kvtier start` child processes.
 * Warming 2 GiB takes 2.5-3.5 s on the 2-core test machine, so the first
 * Ping (about 1 s after spawning) sees it unfinished there; on a faster machine the
 * in-progress checks are skipped, the timing and the end state are not.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../bench/daemon-process.js';
import { packTokens } from '../../src/chunking/tokens.js';
import type { DaemonStats } from '../../src/daemon.js';
import { KvtierClient } from '../../src/protocol/client.js';
import { memAvailableBytes } from '../../src/tiers/host-fit.js';

const cli = join(packageRoot(), 'dist/src/cli/main.js');
const dir = mkdtempSync(join(tmpdir(), 'kvtier-warm-'));
const children: ChildProcess[] = [];
const fp = { model: 'warm-model', dtype: 'bfloat16', kvLayout: 'test' };
const tokens = (n: number, seed: number): Buffer => packTokens(Array.from({ length: n }, (_, i) => (i * 7919 + seed) % 128_000));
const GiB = 1024 ** 3;

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function run(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: { ...process.env, KVTIER_CONFIG_FILE: '', LMCACHE_CONFIG_FILE: '', ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr, ms: performance.now() - t0 });
    });
  });
}

/** Spawns `kvtier start` (optionally under a wrapper command) and pings until it answers. */
async function startAndPing(socket: string, env: Record<string, string>, wrapper: string[] = []): Promise<{ child: ChildProcess; client: KvtierClient; pingMs: number; stderr: () => string }> {
  const t0 = performance.now();
  const argv = [...wrapper, process.execPath, cli, 'start', '--socket', socket];
  const child = spawn(argv[0], argv.slice(1), { env: { ...process.env, KVTIER_CONFIG_FILE: '', LMCACHE_CONFIG_FILE: '', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  for (;;) {
    if (child.exitCode !== null) throw new Error(`kvtier start exited ${child.exitCode}: ${err}`);
    if (performance.now() - t0 > 20_000) throw new Error(`no Ping answered within 20 s: ${err}`);
    try {
      // The client is kept for the test: its requests (4 MiB stores while 2 GiB warm beside the
      // whole suite) get 10 s; 2 s timed a store out once in CI.
      const client = await KvtierClient.connect({ path: socket, fingerprint: fp, timeoutMs: 10_000 });
      await client.ping();
      return { child, client, pingMs: performance.now() - t0, stderr: () => err };
    } catch {
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

const stats = async (c: KvtierClient): Promise<DaemonStats> => (await c.stats()) as unknown as DaemonStats;

describe('a 2 GiB pool', () => {
  it('answers a Ping at most 2 s later than a daemon without a pool, skips (counts) stores until ready, then serves everything', async () => {
    // Baseline in the same run: a daemon with no pool to warm (heap memory).
    const base = await startAndPing(join(dir, 'heap.sock'), { KVTIER_MAX_LOCAL_CPU_SIZE: '2', KVTIER_HOST_MEMORY: 'heap' });
    await base.client.close();
    await stop(base.child);
    const socket = join(dir, 'big.sock');
    const { child, client, pingMs, stderr } = await startAndPing(socket, { KVTIER_MAX_LOCAL_CPU_SIZE: '2' });
    try {
      // Spawn to first Ping includes Node's own start (~1 s alone on 2 cores,
      // 3 s beside other suites): the pool may add at most 2 s to the
      // baseline. Warming these 2 GiB before listening, as before, added
      // 2.5-3.5 s alone and more beside other suites.
      console.log(`warming.test.ts: first Ping ${pingMs.toFixed(0)} ms after spawning; heap-memory baseline ${base.pingMs.toFixed(0)} ms`);
      expect(pingMs).toBeLessThan(base.pingMs + 2000);
      expect(pingMs).toBeLessThan(10_000);
      const first = await stats(client);
      expect(first.memory.capacityBytes).toBe(2 * GiB);
      expect(first.memory.readyBytes).toBeGreaterThanOrEqual(64 << 20); // the first step warms before listening
      expect(first.memory.readyBytes).toBeLessThanOrEqual(first.memory.capacityBytes);
      const early = (await client.store({ address: { tokens: tokens(4 * 256, 1) }, chunks: Array.from({ length: 4 }, () => randomBytes(1 << 20)) })).copied;
      expect(early.storedChunks + early.skippedChunks).toBe(4);
      if (!first.memory.warm) {
        expect(first.memory.readyBytes).toBeLessThan(first.memory.capacityBytes);
        const text = await run(['stats', '--socket', socket], {});
        expect(text.stdout).toMatch(/host pool warming\s+(in progress: [\d.]+ (MiB|GiB) of 2\.00 GiB ready \([\d.]+%\)|done: )/);
      } else {
        console.log(`warming.test.ts: the pool was warm at the first Ping (${pingMs.toFixed(0)} ms): in-progress checks skipped`);
      }

      const deadline = Date.now() + 30_000;
      let s = await stats(client);
      while (!s.memory.warm && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        const next = await stats(client);
        expect(next.memory.readyBytes).toBeGreaterThanOrEqual(s.memory.readyBytes);
        s = next;
      }
      expect(s.memory).toMatchObject({ warm: true, readyBytes: 2 * GiB });
      expect(s.memory.pinned).toBe(s.memory.lockedBytes === 2 * GiB);
      expect(s.host.skippedWarming + s.host.skippedFull).toBe(early.skippedChunks);
      expect(s.host.skippedFull).toBe(0);
      expect(s.counters.skippedChunks).toBe(early.skippedChunks);
      // Stats turn warm in the same tick the pool does; the log line comes
      // through the stderr pipe a little later (CI once read stderr first).
      const line = s.memory.pinned ? '"host pool warm"' : 'host pool warm but not page-locked';
      const logDeadline = Date.now() + 5_000;
      while (!stderr().includes(line) && Date.now() < logDeadline) await new Promise((r) => setTimeout(r, 20));
      expect(stderr()).toContain(line);

      const t = tokens(8 * 256, 2);
      const chunks = Array.from({ length: 8 }, () => randomBytes(4 << 20));
      const stored = (await client.store({ address: { tokens: t }, chunks })).copied;
      expect(stored).toMatchObject({ storedChunks: 8, skippedChunks: 0 });
      const hit = await client.lookup({ tokens: t });
      expect(hit.hitChunks).toBe(8);
      const got = await client.retrieve({ leaseId: hit.leaseId });
      expect(got.loadedChunks).toBe(8);
      got.chunks.forEach((c, i) => expect(Buffer.from(c).equals(chunks[i])).toBe(true));
      const text = await run(['stats', '--socket', socket], {});
      expect(text.stdout).toMatch(/host pool warming\s+done: 2\.00 GiB of 2\.00 GiB ready \(100\.0%\)/);
    } finally {
      await client.close();
      await stop(child);
    }
  }, 60_000);
});

describe('a pool that cannot be had', () => {
  it('above MemAvailable: exit 2 naming max_local_cpu_size, the bytes it needs and the limit', async () => {
    const avail = memAvailableBytes();
    expect(avail).not.toBeNull();
    const r = await run(['start', '--socket', join(dir, 'huge.sock')], { KVTIER_MAX_LOCAL_CPU_SIZE: '60000' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/configuration error: max_local_cpu_size 60000 GB needs 64424509440000 bytes \(60000\.00 GiB\) of host memory, but MemAvailable is \d+ bytes \([\d.]+ GiB\); lower max_local_cpu_size, or set shrink_local_cpu_to_available: true/);
    expect(r.ms).toBeLessThan(10_000);
  }, 30_000);
});

describe('where mlock is refused', () => {
  // RLIMIT_MEMLOCK 0, and as root without CAP_IPC_LOCK (which ignores the limit).
  const wrapper = process.getuid?.() === 0 ? ['bash', '-c', 'ulimit -l 0 && exec setpriv --inh-caps=-all --bounding-set=-ipc_lock "$@"', 'kvtier'] : ['bash', '-c', 'ulimit -l 0 && exec "$@"', 'kvtier'];
  it('the pool still serves, unlocked, and stats and doctor say so', async () => {
    const socket = join(dir, 'unlocked.sock');
    const { child, client } = await startAndPing(socket, { KVTIER_MAX_LOCAL_CPU_SIZE: '0.25' }, wrapper);
    try {
      const deadline = Date.now() + 30_000;
      let s = await stats(client);
      while (!s.memory.warm && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        s = await stats(client);
      }
      expect(s.memory).toMatchObject({ warm: true, pinned: false, lockedBytes: 0, readyBytes: 0.25 * GiB });
      expect(s.memory.detail).toMatch(/mlock refused \(Operation not permitted\)/);
      const t = tokens(256, 3);
      const chunk = randomBytes(1 << 20);
      expect((await client.store({ address: { tokens: t }, chunks: [chunk] })).copied.storedChunks).toBe(1);
      const l = await client.lookup({ tokens: t });
      expect(Buffer.from((await client.retrieve({ leaseId: l.leaseId })).chunks[0]).equals(chunk)).toBe(true);
      const text = await run(['stats', '--socket', socket], {});
      expect(text.stdout).toMatch(/host pool warming\s+done: 256\.0 MiB of 256\.0 MiB ready \(100\.0%\), NOT page-locked/);
    } finally {
      await client.close();
      await stop(child);
    }
    const doc = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(wrapper[0], [...wrapper.slice(1), process.execPath, cli, 'doctor', '--socket', join(dir, 'none.sock')], { env: { ...process.env, KVTIER_CONFIG_FILE: '', LMCACHE_CONFIG_FILE: '' }, timeout: 30_000 }, (err, stdout) => {
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout });
      });
    });
    expect(doc.stdout).toMatch(/^WARN\s+pinned memory\s+64 MiB probe: .*mlock refused \(Operation not permitted\)/m);
    expect(doc.code).toBe(0);
  }, 60_000);
});
