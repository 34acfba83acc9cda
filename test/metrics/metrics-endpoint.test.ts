/**
 * The Prometheus endpoint of a real daemon with a real Valkey: a second
 * daemon (another instance of the fleet) writes chunks to the shared Valkey,
 * the scraped daemon stores its own, looks both up, retrieves them inline
 * and in block form from real shm files, meets a corrupted value and a
 * Valkey restart; /metrics is scraped with fetch after each step and every
 * counter must have moved by exactly what was done.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeAvailable } from '../../native/index.js';
import { packTokens } from '../../src/chunking/tokens.js';
import { formatStats } from '../../src/cli/stats.js';
import { METRICS } from '../../src/metrics/names.js';
import { flashAttn, type Shape } from '../native/shm-fixture.js';
import { startTestDaemon, waitFor, type TestDaemon } from '../helpers/daemon.js';
import { freePort, startValkey, stopAllValkey, type ValkeyServer } from '../../bench/valkey-server.js';
import { parseMetrics, type Scrape } from './parse.js';

const CHUNK = 4096;
const tokens = (n: number, seed: number): Buffer => packTokens(Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104_729) % 128_000));
const chunks = (n: number, fill: number): Buffer[] => Array.from({ length: n }, (_, i) => Buffer.alloc(CHUNK, fill + i));
const u32 = (ids: number[]): Buffer => Buffer.from(Uint32Array.from(ids).buffer);

describe('metrics endpoint', () => {
  let valkey: ValkeyServer;
  let a: TestDaemon;
  let b: TestDaemon;
  let url: string;
  let last: Scrape;

  const scrape = async (): Promise<Scrape> => {
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    last = parseMetrics(await res.text());
    return last;
  };
  /** How much each series moved since the previous scrape. */
  const delta = async (): Promise<(name: string, labels?: Record<string, string>) => number> => {
    const before = last;
    const now = await scrape();
    return (name, labels = {}) => now.value(name, labels) - before.value(name, labels);
  };

  beforeAll(async () => {
    valkey = await startValkey();
    const port = await freePort();
    a = await startTestDaemon({ remote_url: valkey.url, key_prefix: 'mt' });
    b = await startTestDaemon({ remote_url: valkey.url, key_prefix: 'mt', metrics_port: port });
    url = `http://127.0.0.1:${port}/metrics`;
  });
  afterAll(async () => {
    await b?.stop();
    await a?.stop();
    await stopAllValkey();
  });

  it('serves every metric in src/metrics/names.ts, and only GET /metrics', async () => {
    expect(b.daemon.metricsUrl).toBe(url);
    expect(a.daemon.metricsUrl).toBeNull();
    const s = await scrape();
    for (const m of Object.values(METRICS)) {
      expect(s.help.get(m.name), m.name).toBe(m.help);
      expect(s.type.get(m.name), m.name).toBe(m.type);
    }
    expect(s.value('kvtier_valkey_up')).toBe(1);
    expect(s.value('kvtier_valkey_configured')).toBe(1);
    expect(s.value('kvtier_host_pool_capacity_bytes')).toBe(Math.floor(0.25 * 1024 ** 3));
    expect((await fetch(url.replace('/metrics', '/'))).status).toBe(404);
    expect((await fetch(url, { method: 'POST' })).status).toBe(404);
  });

  it('counts stores, host and valkey hits, retrieves and saved prefill exactly', async () => {
    const fleetPrompt = tokens(3 * 256, 1);
    const own = tokens(2 * 256 + 100, 2);
    const ca = await a.connect({ fingerprint: { model: 'metrics' } });
    const cb = await b.connect({ fingerprint: { model: 'metrics' } });
    await (await ca.store({ address: { tokens: fleetPrompt }, chunks: chunks(3, 1) })).committed;
    await scrape();

    const st = await cb.store({ address: { tokens: own }, chunks: chunks(2, 9) });
    expect((await st.committed).committedChunks).toBe(2);
    let d = await delta();
    expect(d('kvtier_stored_chunks_total', { tier: 'host' })).toBe(2);
    expect(d('kvtier_stored_bytes_total', { tier: 'host' })).toBe(2 * CHUNK);
    expect(d('kvtier_stored_chunks_total', { tier: 'valkey' })).toBe(2);
    expect(d('kvtier_stored_bytes_total', { tier: 'valkey' })).toBe(2 * CHUNK);
    expect(d('kvtier_write_behind_written_total')).toBe(2);
    expect(d('kvtier_store_duration_seconds_count', { form: 'inline' })).toBe(1);

    // The other instance's prompt: all three chunks come from Valkey.
    const l1 = await cb.lookup({ tokens: fleetPrompt });
    expect(l1.valkeyChunks).toBe(3);
    const r1 = await cb.retrieve({ leaseId: l1.leaseId });
    expect(r1.loadedChunks).toBe(3);
    await cb.releaseLease(l1.leaseId);
    // Our own prompt plus a 100-token tail: two chunks from the host tier.
    const l2 = await cb.lookup({ tokens: own });
    expect(l2.hostChunks).toBe(2);
    const r2 = await cb.retrieve({ leaseId: l2.leaseId });
    expect(r2.loadedChunks).toBe(2);
    await cb.releaseLease(l2.leaseId);

    d = await delta();
    expect(d('kvtier_lookups_total')).toBe(2);
    expect(d('kvtier_lookup_tokens_total', { tier: 'host' })).toBe(768 + 612);
    expect(d('kvtier_hit_tokens_total', { tier: 'host' })).toBe(512);
    expect(d('kvtier_miss_tokens_total', { tier: 'host' })).toBe(768 + 100);
    expect(d('kvtier_lookup_tokens_total', { tier: 'valkey' })).toBe(768 + 100);
    expect(d('kvtier_hit_tokens_total', { tier: 'valkey' })).toBe(768);
    expect(d('kvtier_miss_tokens_total', { tier: 'valkey' })).toBe(100);
    expect(d('kvtier_retrieved_chunks_total', { tier: 'valkey' })).toBe(3);
    expect(d('kvtier_retrieved_bytes_total', { tier: 'valkey' })).toBe(3 * CHUNK);
    expect(d('kvtier_retrieved_chunks_total', { tier: 'host' })).toBe(5);
    expect(d('kvtier_retrieved_bytes_total', { tier: 'host' })).toBe(5 * CHUNK);
    expect(d('kvtier_prefill_tokens_saved_total')).toBe(5 * 256);
    expect(d('kvtier_lookup_duration_seconds_count')).toBe(2);
    expect(d('kvtier_retrieve_duration_seconds_count', { form: 'inline' })).toBe(2);
    expect(last.value('kvtier_host_chunks')).toBe(5);
    expect(last.value('kvtier_host_pool_used_bytes')).toBe(5 * CHUNK);
    expect(last.value('kvtier_leases')).toBe(0);
    expect(last.value('kvtier_host_pinned_bytes')).toBe(0);
    expect(last.value('kvtier_connected_clients')).toBeGreaterThanOrEqual(1);

    const stats = b.daemon.stats();
    expect(stats.slowOps.length).toBe(5);
    expect(stats.slowOps.map((o) => o.op)).toEqual(expect.arrayContaining(['lookup', 'retrieve']));
    expect(stats.tokens).toMatchObject({ hostHit: 512, valkeyHit: 768, prefillSaved: 1280 });
    // `kvtier stats` prints the same figures for a person.
    const text = formatStats(stats);
    expect(text).toMatch(/token hit rate\s+92\.8% of 1380 looked up \(host 37\.1%, valkey 88\.5% of 868 asked\); 1280 prefill tokens handed back/);
    expect(text).toMatch(/bytes per tier\s+host stored 0\.0 MiB, retrieved 0\.0 MiB; valkey stored 0\.0 MiB, read 0\.0 MiB/);
    expect(text).toMatch(/slowest recent ops\s+(lookup|store|retrieve)/);
    expect(text.split('\n').filter((l) => / ms {2}\d+ chunks/.test(l)).length).toBe(5);
  });

  it('counts a corrupted Valkey value as a verification failure and a failed retrieve', async () => {
    const prompt = tokens(256, 3);
    const before = new Set((await valkey.cli(['--raw', 'KEYS', 'mt:*'])).split('\n'));
    const ca = await a.connect({ fingerprint: { model: 'metrics' } });
    await (await ca.store({ address: { tokens: prompt }, chunks: chunks(1, 5) })).committed;
    const fresh = (await valkey.cli(['--raw', 'KEYS', 'mt:*'])).split('\n').filter((k) => k !== '' && !before.has(k));
    expect(fresh.length).toBe(1);
    await valkey.cli(['SET', fresh[0], 'not a kvtier value']);
    await scrape();

    const cb = await b.connect({ fingerprint: { model: 'metrics' } });
    const l = await cb.lookup({ tokens: prompt });
    expect(l.valkeyChunks).toBe(1);
    const r = await cb.retrieve({ leaseId: l.leaseId });
    expect(r.failedChunks).toBe(1);
    const d = await delta();
    expect(d('kvtier_valkey_verification_failures_total', { reason: 'corrupt' })).toBe(1);
    expect(d('kvtier_valkey_verification_failures_total', { reason: 'incomplete' })).toBe(0);
    expect(d('kvtier_retrieve_failed_chunks_total')).toBe(1);
    expect(d('kvtier_prefill_tokens_saved_total')).toBe(0);
  });

  const shape: Shape = { layers: 2, numBlocks: 64, blockSize: 16, heads: 2, headDim: 32, elemBytes: 2, chunkTokens: 256 };
  it.skipIf(!nativeAvailable())('counts block-form stores and retrieves and registered workers', async () => {
    const src = flashAttn(shape);
    try {
      const cb = await b.connect({ fingerprint: { model: 'metrics-blocks' } });
      await scrape();
      const reg = await cb.registerKv({
        regions: src.spec.regions.map((r) => ({ regionId: r.regionId, sizeBytes: r.sizeBytes, shmPath: r.shmPath })),
        planes: src.spec.planes, numBlocks: shape.numBlocks, blockSize: shape.blockSize,
      });
      const chunkBytes = Number(reg.chunkBytes);
      const prompt = tokens(512, 4);
      const ids = Array.from({ length: 32 }, (_, i) => i);
      await (await cb.store({ address: { tokens: prompt }, blockIds: u32(ids) })).committed;
      const l = await cb.lookup({ tokens: prompt });
      const r = await cb.retrieve({ leaseId: l.leaseId, blockIds: u32(ids.map((i) => i + 32)) });
      expect(r.loadedChunks).toBe(2);
      await cb.releaseLease(l.leaseId);
      let d = await delta();
      expect(last.value('kvtier_registered_workers')).toBe(1);
      expect(d('kvtier_store_duration_seconds_count', { form: 'blocks' })).toBe(1);
      expect(d('kvtier_retrieve_duration_seconds_count', { form: 'blocks' })).toBe(1);
      expect(d('kvtier_stored_bytes_total', { tier: 'host' })).toBe(2 * chunkBytes);
      expect(d('kvtier_retrieved_bytes_total', { tier: 'host' })).toBe(2 * chunkBytes);
      expect(d('kvtier_prefill_tokens_saved_total')).toBe(512);
      await cb.close();
      await waitFor(async () => (await scrape()).value('kvtier_registered_workers') === 0, 'registration released');
      d = await delta();
      expect(d('kvtier_registered_workers')).toBe(0);
    } finally {
      src.cleanup();
    }
  });

  it('shows Valkey going down and the reconnect', async () => {
    await scrape();
    const reconnects = last.value('kvtier_valkey_reconnects_total');
    await valkey.kill();
    // A lost connection is noticed by the next request: keep asking.
    const cb = await b.connect({ fingerprint: { model: 'metrics-down' } });
    let seed = 100;
    await waitFor(async () => {
      await cb.lookup({ tokens: tokens(256, seed++) }, { noLease: true });
      return (await scrape()).value('kvtier_valkey_up') === 0;
    }, 'kvtier_valkey_up 0', 15_000);
    await valkey.restart();
    await waitFor(async () => (await scrape()).value('kvtier_valkey_up') === 1, 'kvtier_valkey_up 1', 20_000);
    expect(last.value('kvtier_valkey_reconnects_total')).toBeGreaterThan(reconnects);
  }, 60_000);
});
