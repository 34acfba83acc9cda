/**
 * kvtier_lookup_miss_chunks_total{reason} and prefill_tokens_saved against
 * real daemons and a real valkey-server: each reason is provoked by what a
 * fleet really does (a prompt never stored, a pool too small to keep it, a
 * lease used too late, a corrupted Valkey value, Valkey only paying less
 * than recompute, Valkey killed), and /metrics, Stats --json and the stats
 * text must move by exactly that much.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packTokens } from '../../src/chunking/tokens.js';
import { formatStats } from '../../src/cli/stats.js';
import type { DaemonStats } from '../../src/daemon.js';
import { MISS_REASONS } from '../../src/manager/counters.js';
import { nativeAvailable } from '../../native/index.js';
import { SKIP_BLOCK } from '../../proto/constants.js';
import { flashAttn, type Shape } from '../native/shm-fixture.js';
import { freePort, startValkey, stopAllValkey, type ValkeyServer } from '../../bench/valkey-server.js';
import { startTestDaemon, waitFor, type TestDaemon } from '../helpers/daemon.js';
import { parseMetrics } from './parse.js';

const tokens = (n: number, seed: number): Buffer => packTokens(Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104_729) % 128_000));
const fp = { model: 'miss-reasons' };
const MiB = 1024 * 1024;

describe('miss reasons', () => {
  let valkey: ValkeyServer;
  let host: TestDaemon; // no Valkey, a ~10 MiB pool, partial chunks saved
  let a: TestDaemon; // writes to Valkey
  let b: TestDaemon; // reads from Valkey, scraped
  let fast: TestDaemon; // recompute is faster than Valkey
  let url: string;

  const misses = async (d: TestDaemon): Promise<Record<string, number>> => ((await (await d.connect()).stats()) as unknown as DaemonStats).misses;
  const scrapeMisses = async (): Promise<Record<string, number>> => {
    const s = parseMetrics(await (await fetch(url)).text());
    return Object.fromEntries(MISS_REASONS.map((r) => [r, s.value('kvtier_lookup_miss_chunks_total', { reason: r })]));
  };
  /** What moved while `fn` ran, in Stats of `d`. */
  const moved = async (d: TestDaemon, fn: () => Promise<void>): Promise<Record<string, number>> => {
    const before = await misses(d);
    await fn();
    const after = await misses(d);
    return Object.fromEntries(Object.entries(after).filter(([k, n]) => n !== before[k]).map(([k, n]) => [k, n - before[k]]));
  };

  beforeAll(async () => {
    valkey = await startValkey();
    host = await startTestDaemon({ max_local_cpu_size: 0.01, host_memory: 'heap', save_unfull_chunk: true });
    a = await startTestDaemon({ remote_url: valkey.url, key_prefix: 'mr' });
    const port = await freePort();
    b = await startTestDaemon({ remote_url: valkey.url, key_prefix: 'mr', metrics_port: port });
    url = `http://127.0.0.1:${port}/metrics`;
    fast = await startTestDaemon({ remote_url: valkey.url, key_prefix: 'mr', recompute_tokens_per_s: 1e9 });
  });
  afterAll(async () => {
    await fast?.stop();
    await b?.stop();
    await a?.stop();
    await host?.stop();
    await stopAllValkey();
  });

  it('not_stored: once per lookup, for the first chunk it could not offer', async () => {
    const c = await host.connect({ fingerprint: fp });
    const p = tokens(3 * 256, 1);
    expect(await moved(host, async () => {
      expect((await c.lookup({ tokens: p }, { noLease: true })).hitChunks).toBe(0);
    })).toEqual({ not_stored: 1 });
    await (await c.store({ address: { tokens: p.subarray(0, 2 * 256 * 4) }, chunks: [Buffer.alloc(4096, 1), Buffer.alloc(4096, 2)] })).committed;
    expect(await moved(host, async () => {
      expect((await c.lookup({ tokens: p }, { noLease: true })).hitChunks).toBe(2);
    })).toEqual({ not_stored: 1 });
    expect(await moved(host, async () => {
      expect((await c.lookup({ tokens: p.subarray(0, 2 * 256 * 4) }, { noLease: true })).hitChunks).toBe(2);
    })).toEqual({});
  });

  it('evicted: a prompt pushed out of a small pool is told apart from one never stored', async () => {
    const c = await host.connect({ fingerprint: fp });
    const old = tokens(4 * 256, 2);
    await (await c.store({ address: { tokens: old }, chunks: [0, 1, 2, 3].map(() => randomBytes(MiB)) })).committed;
    for (let seed = 10; seed < 14; seed++) {
      await (await c.store({ address: { tokens: tokens(4 * 256, seed) }, chunks: [0, 1, 2, 3].map(() => randomBytes(MiB)) })).committed;
    }
    const evictions = ((await (await host.connect()).stats()) as unknown as DaemonStats).host.evictions;
    expect(evictions).toBeGreaterThan(4);
    expect(await moved(host, async () => {
      expect((await c.lookup({ tokens: old }, { noLease: true })).hitChunks).toBe(0);
    })).toEqual({ evicted: 1 });
    // Stored again, it is a hit; invalidated, it was not evicted.
    await (await c.store({ address: { tokens: old }, chunks: [randomBytes(MiB)] })).committed;
    await c.invalidate({ tokens: old });
    expect(await moved(host, async () => {
      expect((await c.lookup({ tokens: old }, { noLease: true })).hitChunks).toBe(0);
    })).toEqual({ not_stored: 1 });
  });

  it('lease_expired: the chunks a late Retrieve asked for', async () => {
    const c = await host.connect({ fingerprint: fp });
    const p = tokens(2 * 256, 3);
    await (await c.store({ address: { tokens: p }, chunks: [Buffer.alloc(4096, 3), Buffer.alloc(4096, 4)] })).committed;
    const l = await c.lookup({ tokens: p }, { leaseTtlMs: 50 });
    expect(l.hitChunks).toBe(2);
    await new Promise((r) => setTimeout(r, 120));
    expect(await moved(host, async () => {
      await expect(c.retrieve({ leaseId: l.leaseId })).rejects.toMatchObject({ code: 'KVT_LEASE_NOT_FOUND' });
    })).toEqual({ lease_expired: 2 });
    // A lease id that never existed is not an expired lease.
    expect(await moved(host, async () => {
      await expect(c.retrieve({ leaseId: 999_999 })).rejects.toMatchObject({ code: 'KVT_LEASE_NOT_FOUND' });
    })).toEqual({});
  });

  it('prefill_tokens_saved counts the tokens loaded: a partial last chunk by its real tokens', async () => {
    const c = await host.connect({ fingerprint: fp });
    const p = tokens(2 * 256 + 100, 4);
    await (await c.store({ address: { tokens: p }, chunks: [Buffer.alloc(4096, 5), Buffer.alloc(4096, 6), Buffer.alloc(1600, 7)] })).committed;
    const before = ((await c.stats()) as unknown as DaemonStats).tokens.prefillSaved;
    const l = await c.lookup({ tokens: p });
    expect(l).toMatchObject({ hitChunks: 3, hitTokens: 612 });
    expect((await c.retrieve({ leaseId: l.leaseId })).loadedChunks).toBe(3);
    expect(((await c.stats()) as unknown as DaemonStats).tokens.prefillSaved - before).toBe(612);
    // Two of the three chunks: 256 + 100.
    const l2 = await c.lookup({ tokens: p });
    expect((await c.retrieve({ leaseId: l2.leaseId, firstChunk: 1, numChunks: 2 })).loadedChunks).toBe(2);
    expect(((await c.stats()) as unknown as DaemonStats).tokens.prefillSaved - before).toBe(612 + 356);
  });

  it.skipIf(!nativeAvailable())('prefill_tokens_saved in block form leaves out the blocks the worker skipped', async () => {
    const shape: Shape = { layers: 2, numBlocks: 64, blockSize: 16, heads: 2, headDim: 32, elemBytes: 2, chunkTokens: 256 };
    const src = flashAttn(shape);
    try {
      const c = await a.connect({ fingerprint: { model: 'miss-reasons-blocks' } });
      await c.registerKv({
        regions: src.spec.regions.map((r) => ({ regionId: r.regionId, sizeBytes: r.sizeBytes, shmPath: r.shmPath })),
        planes: src.spec.planes, numBlocks: shape.numBlocks, blockSize: shape.blockSize,
      });
      const p = tokens(512, 9);
      const ids = Array.from({ length: 32 }, (_, i) => i);
      await (await c.store({ address: { tokens: p }, blockIds: Buffer.from(Uint32Array.from(ids).buffer) })).committed;
      const before = ((await c.stats()) as unknown as DaemonStats).tokens.prefillSaved;
      const l = await c.lookup({ tokens: p });
      // The first 5 blocks (80 tokens) of chunk 0 are already computed by the worker.
      const dst = ids.map((i) => (i < 5 ? SKIP_BLOCK : i + 32));
      expect((await c.retrieve({ leaseId: l.leaseId, blockIds: Buffer.from(Uint32Array.from(dst).buffer) })).loadedChunks).toBe(2);
      expect(((await c.stats()) as unknown as DaemonStats).tokens.prefillSaved - before).toBe(512 - 5 * 16);
    } finally {
      src.cleanup();
    }
  });

  it('verification_failed: a corrupted Valkey value, in Stats and /metrics', async () => {
    const p = tokens(256, 5);
    const keysBefore = new Set((await valkey.cli(['--raw', 'KEYS', 'mr:*'])).split('\n'));
    const ca = await a.connect({ fingerprint: fp });
    await (await ca.store({ address: { tokens: p }, chunks: [Buffer.alloc(4096, 8)] })).committed;
    const fresh = (await valkey.cli(['--raw', 'KEYS', 'mr:*'])).split('\n').filter((k) => k !== '' && !keysBefore.has(k));
    expect(fresh.length).toBe(1);
    await valkey.cli(['SET', fresh[0], 'not a kvtier value']);
    const scraped = await scrapeMisses();
    const cb = await b.connect({ fingerprint: fp });
    expect(await moved(b, async () => {
      const l = await cb.lookup({ tokens: p });
      expect(l.valkeyChunks).toBe(1);
      expect((await cb.retrieve({ leaseId: l.leaseId })).failedChunks).toBe(1);
    })).toEqual({ verification_failed: 1 });
    const now = await scrapeMisses();
    expect(now.verification_failed - scraped.verification_failed).toBe(1);
    // Deleted as corrupt: the next lookup finds it nowhere.
    expect(await moved(b, async () => {
      expect((await cb.lookup({ tokens: p }, { noLease: true })).hitChunks).toBe(0);
    })).toEqual({ not_stored: 1 });
  });

  it('slow_skip: a Valkey-only prefix not offered because recompute is faster', async () => {
    const ca = await a.connect({ fingerprint: fp });
    const data = [0, 1, 2, 3].map(() => randomBytes(MiB));
    for (const seed of [6, 7]) await (await ca.store({ address: { tokens: tokens(4 * 256, seed) }, chunks: data })).committed;
    const c = await fast.connect({ fingerprint: fp });
    const l = await c.lookup({ tokens: tokens(4 * 256, 6) });
    expect(l.valkeyChunks).toBe(4); // nothing measured yet: offered
    await c.retrieve({ leaseId: l.leaseId });
    await c.releaseLease(l.leaseId);
    await waitFor(() => fast.daemon.stats().remote.pace.readBytesPerS !== null, 'a read rate', 10_000);
    expect(await moved(fast, async () => {
      expect((await c.lookup({ tokens: tokens(4 * 256, 7) }, { noLease: true })).hitChunks).toBe(0);
    })).toEqual({ slow_skip: 1 });
  });

  it('valkey_down: a miss while Valkey is down; the stats text shows every reason', async () => {
    const cb = await b.connect({ fingerprint: fp });
    await valkey.kill();
    // A lost connection is noticed by the next request: keep asking.
    let seed = 100;
    await waitFor(async () => {
      await cb.lookup({ tokens: tokens(256, seed++) }, { noLease: true });
      return !b.daemon.stats().remote.available;
    }, 'valkey seen down', 15_000);
    expect(await moved(b, async () => {
      expect((await cb.lookup({ tokens: tokens(256, 8) }, { noLease: true })).hitChunks).toBe(0);
    })).toEqual({ valkey_down: 1 });
    const s = (await cb.stats()) as unknown as DaemonStats;
    expect(Object.keys(s.misses).sort()).toEqual([...MISS_REASONS].sort());
    expect(s.misses.verification_failed).toBe(1);
    expect(s.misses.valkey_down).toBeGreaterThanOrEqual(1);
    const m = s.misses;
    expect(formatStats(s)).toMatch(new RegExp(`miss reasons +not_stored ${m.not_stored}, evicted 0, verification_failed 1, valkey_down ${m.valkey_down}, slow_skip 0, lease_expired 0 `));
    const scraped = await scrapeMisses();
    expect(scraped).toEqual(s.misses);
  });
});
