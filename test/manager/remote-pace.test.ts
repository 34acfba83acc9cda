/**
 * "A remote tier slower than recompute" must not be offered: with
 * recompute_tokens_per_s set, a Lookup stops offering chunks found only in
 * Valkey once the read rate it measured makes loading them slower than
 * prefill, and keeps offering what the host tier holds. Against a real
 * valkey-server and real daemons; the estimator's arithmetic on its own first.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packTokens } from '../../src/chunking/tokens.js';
import { PROBE_AFTER_MS, RemotePace } from '../../src/manager/remote-pace.js';
import { startTestDaemon, waitFor, type TestDaemon } from '../helpers/daemon.js';
import { startValkey, stopAllValkey, type ValkeyServer } from '../../bench/valkey-server.js';

const MiB = 1 << 20;
const fp = { model: 'pace-model', dtype: 'bfloat16', kvLayout: 'test' };
const tokens = (seed: number): Buffer => packTokens(Array.from({ length: 4 * 256 }, (_, i) => (i * 7919 + seed * 104729) % 128_000));

describe('RemotePace', () => {
  it('offers remote hits until a recompute speed, a read rate and the chunk size are all known', () => {
    let now = 0;
    const pace = new RemotePace(10_000, () => now);
    expect(pace.pays('ns')).toBe(true);
    pace.recordRead(100 * MiB, 1000); // 100 MiB/s
    expect(pace.pays('ns')).toBe(true); // bytes per token unknown
    pace.learnChunk('ns', MiB, 256); // 4 KiB per token: 40 us to load, 100 us to recompute
    expect(pace.pays('ns')).toBe(true);
    expect(pace.pays('other-ns')).toBe(true);
    pace.recordRead(MiB, 1000); // a slow sample: EWMA 100 -> ~70 MiB/s, still pays
    expect(pace.snapshot().readBytesPerS).toBeCloseTo(0.7 * 100 * MiB + 0.3 * MiB, 0);
    for (let i = 0; i < 10; i++) pace.recordRead(MiB, 1000); // ~1 MiB/s: 4 ms per token
    expect(pace.pays('ns')).toBe(false);
    now += PROBE_AFTER_MS + 1; // stale: try the remote again
    expect(pace.snapshot().readBytesPerS).toBeNull();
    expect(pace.pays('ns')).toBe(true);
  });

  it('never refuses without recompute_tokens_per_s', () => {
    const pace = new RemotePace(null);
    pace.learnChunk('ns', MiB, 256);
    pace.recordRead(1, 1e6);
    expect(pace.pays('ns')).toBe(true);
  });
});

describe('a Valkey slower than recompute is not offered', () => {
  let valkey: ValkeyServer;
  let producer: TestDaemon;
  let fastGpu: TestDaemon; // recomputes far faster than any Valkey read
  let slowGpu: TestDaemon; // recomputes one token per second
  const chunks = [0, 1, 2, 3].map(() => randomBytes(MiB));

  beforeAll(async () => {
    valkey = await startValkey({});
    producer = await startTestDaemon({ remote_url: valkey.url, valkey_connections: 2 });
    fastGpu = await startTestDaemon({ remote_url: valkey.url, valkey_connections: 2, recompute_tokens_per_s: 1e9 });
    slowGpu = await startTestDaemon({ remote_url: valkey.url, valkey_connections: 2, recompute_tokens_per_s: 1 });
    const c = await producer.connect({ fingerprint: fp });
    for (const seed of [1, 2, 3]) {
      expect(await (await c.store({ address: { tokens: tokens(seed) }, chunks })).committed).toMatchObject({ committedChunks: 4 });
    }
  });
  afterAll(async () => {
    await producer?.stop();
    await fastGpu?.stop();
    await slowGpu?.stop();
    await stopAllValkey();
  });

  async function firstLoadMeasures(d: TestDaemon): Promise<void> {
    const c = await d.connect({ fingerprint: fp });
    const l = await c.lookup({ tokens: tokens(1) });
    expect(l).toMatchObject({ hitChunks: 4, valkeyChunks: 4 }); // nothing measured yet: offered
    const r = await c.retrieve({ leaseId: l.leaseId });
    r.chunks.forEach((x, i) => expect(Buffer.from(x).equals(chunks[i])).toBe(true));
    await c.releaseLease(l.leaseId);
    await waitFor(() => d.daemon.stats().remote.pace.readBytesPerS !== null, 'a read rate', 10_000);
  }

  it('fast prefill: Valkey-only chunks are left to recompute, host chunks are still offered, and it is counted', async () => {
    await firstLoadMeasures(fastGpu);
    const c = await fastGpu.connect({ fingerprint: fp });
    expect(await c.lookup({ tokens: tokens(2) }, { noLease: true })).toMatchObject({ hitChunks: 0, valkeyChunks: 0 });
    expect(fastGpu.daemon.stats().counters.remoteSlowSkippedChunks).toBe(4);
    // The first prompt's chunks were promoted to the host tier: those pay.
    expect(await c.lookup({ tokens: tokens(1) }, { noLease: true })).toMatchObject({ hitChunks: 4, hostChunks: 4 });
  });

  it('slow prefill: Valkey-only chunks are offered and load byte-exact', async () => {
    await firstLoadMeasures(slowGpu);
    const c = await slowGpu.connect({ fingerprint: fp });
    const l = await c.lookup({ tokens: tokens(3) });
    expect(l).toMatchObject({ hitChunks: 4, valkeyChunks: 4 });
    const r = await c.retrieve({ leaseId: l.leaseId });
    r.chunks.forEach((x, i) => expect(Buffer.from(x).equals(chunks[i])).toBe(true));
    expect(slowGpu.daemon.stats().counters.remoteSlowSkippedChunks).toBe(0);
  });
});

/**
 * The same guard for key-addressed pages (SGLang's HiCache backend): a key carries no token
 * count, so the daemon takes the namespace's block_size (the backend sends its page size) as
 * the tokens a page covers. A keyed Lookup's and a Get's remote reads are rate samples.
 */
describe('key-addressed pages from a Valkey slower than recompute are not offered', () => {
  let valkey: ValkeyServer;
  let producer: TestDaemon;
  let fastGpu: TestDaemon;
  let slowGpu: TestDaemon;
  const pageFp = { ...fp, model: 'pace-pages', blockSize: 64 };
  const pages = [0, 1, 2, 3].map(() => randomBytes(MiB));
  const keys = (set: number): Buffer[] => [0, 1, 2, 3].map((i) => Buffer.from(`page-${set}-${i}`));

  beforeAll(async () => {
    valkey = await startValkey({});
    producer = await startTestDaemon({ remote_url: valkey.url, valkey_connections: 2 });
    fastGpu = await startTestDaemon({ remote_url: valkey.url, valkey_connections: 2, recompute_tokens_per_s: 1e9 });
    slowGpu = await startTestDaemon({ remote_url: valkey.url, valkey_connections: 2, recompute_tokens_per_s: 1 });
    const c = await producer.connect({ fingerprint: pageFp });
    for (const set of [1, 2, 3, 4]) for (const [i, k] of keys(set).entries()) await c.put(k, pages[i]);
    const seen = await fastGpu.connect({ fingerprint: pageFp });
    await waitFor(async () => (await seen.exists(keys(4))).found.every(Boolean), 'the pages in Valkey', 10_000);
  });
  afterAll(async () => {
    await producer?.stop();
    await fastGpu?.stop();
    await slowGpu?.stop();
    await stopAllValkey();
  });

  async function firstLoadMeasures(d: TestDaemon): Promise<void> {
    const c = await d.connect({ fingerprint: pageFp });
    const l = await c.lookup({ keys: keys(1) });
    expect(l).toMatchObject({ hitChunks: 4, valkeyChunks: 4 }); // nothing measured yet: offered
    const r = await c.retrieve({ leaseId: l.leaseId });
    r.chunks.forEach((x, i) => expect(Buffer.from(x).equals(pages[i])).toBe(true));
    await c.releaseLease(l.leaseId);
    await waitFor(() => d.daemon.stats().remote.pace.readBytesPerS !== null, 'a read rate', 10_000);
  }

  it('fast prefill: Valkey-only pages are neither offered by a keyed Lookup nor read by Get', async () => {
    await firstLoadMeasures(fastGpu);
    const c = await fastGpu.connect({ fingerprint: pageFp });
    expect(await c.lookup({ keys: keys(2) }, { noLease: true })).toMatchObject({ hitChunks: 0, valkeyChunks: 0 });
    expect(fastGpu.daemon.stats().counters.remoteSlowSkippedChunks).toBe(4);
    expect(await c.get(keys(3)[0])).toBeNull();
    expect(fastGpu.daemon.stats().counters.remoteSlowSkippedGets).toBe(1);
    // Pages the first load promoted to the host tier still pay, by Lookup and by Get.
    expect(await c.lookup({ keys: keys(1) }, { noLease: true })).toMatchObject({ hitChunks: 4, hostChunks: 4 });
    expect((await c.get(keys(1)[2]))?.equals(pages[2])).toBe(true);
  });

  it('slow prefill: Valkey-only pages are offered and read byte-exact, and a Get alone yields a read rate', async () => {
    const c = await slowGpu.connect({ fingerprint: pageFp });
    expect(slowGpu.daemon.stats().remote.pace.readBytesPerS).toBeNull();
    expect((await c.get(keys(3)[1]))?.equals(pages[1])).toBe(true);
    expect(slowGpu.daemon.stats().remote.pace.readBytesPerS).toBeGreaterThan(0);
    const l = await c.lookup({ keys: keys(2) });
    expect(l).toMatchObject({ hitChunks: 4, valkeyChunks: 4 });
    const r = await c.retrieve({ leaseId: l.leaseId });
    r.chunks.forEach((x, i) => expect(Buffer.from(x).equals(pages[i])).toBe(true));
    expect(slowGpu.daemon.stats().counters).toMatchObject({ remoteSlowSkippedChunks: 0, remoteSlowSkippedGets: 0 });
  });
});
