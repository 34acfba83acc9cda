/**
 * A hung Valkey: a real valkey-server stopped with SIGSTOP (alive, its TCP
 * connections open, answering nothing) for a few seconds. Every tier call
 * made meanwhile ends within hungServerBoundMs() as a miss, false or a
 * skipped store; the tier goes down; after SIGCONT it comes back by itself
 * and round-trips bytes exactly. A stopped server never outlives a test.
 */

import { randomBytes } from 'node:crypto';
import { Decoder, GlideClient } from '@valkey/valkey-glide';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { hungServerBoundMs, MAX_REQUEST_MS, requestCeilingMs, requestTimeInputs, VALKEY_DEFAULTS } from '../../src/tiers/valkey-options.js';
import { encodeValue, FORMAT_VERSION } from '../../src/tiers/valkey-format.js';
import { ValkeyTier, type ValkeyTierOptions } from '../../src/tiers/valkey-tier.js';
import { startValkey, stopAllValkey, type ValkeyServer } from '../../bench/valkey-server.js';
import { randomChunkKey } from './tier-contract.js';

const MiB = 1 << 20;
/** Timer and event-loop lateness on a loaded 2-core host. */
const SLACK_MS = 750;
const quiet = (): void => undefined;

/** Servers stopped by a test, continued in afterEach whatever happened. */
const stopped = new Set<number>();
function pause(pid: number): void {
  stopped.add(pid);
  process.kill(pid, 'SIGSTOP');
}
function resume(pid: number): void {
  process.kill(pid, 'SIGCONT');
  stopped.delete(pid);
}
afterEach(() => {
  for (const pid of stopped) resume(pid);
});
afterAll(async () => {
  for (const pid of stopped) resume(pid);
  await stopAllValkey();
});

async function serverPid(server: ValkeyServer): Promise<number> {
  const m = /process_id:(\d+)/.exec(await server.cli(['INFO', 'server']));
  if (!m) throw new Error('no process_id in INFO server');
  return Number(m[1]);
}

async function timed<T>(p: Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = performance.now();
  const value = await p;
  return { value, ms: performance.now() - t0 };
}

async function until(what: string, cond: () => boolean, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return performance.now() - t0;
}

describe('the hung-server bound', () => {
  it('is 2 x the request ceiling; 2280 ms under default settings', () => {
    expect(requestCeilingMs(requestTimeInputs({}))).toBe(1140);
    expect(hungServerBoundMs()).toBe(2280);
    expect(hungServerBoundMs({ requestTimeoutMs: 250, segmentBytes: 4 * MiB })).toBe(2 * Math.ceil(250 + (2 * (4 * MiB + 65536) * 1000) / 16e6));
  });

  it('never exceeds 2 x MAX_REQUEST_MS, whatever the settings', () => {
    expect(hungServerBoundMs({ requestTimeoutMs: 1e9 })).toBe(2 * MAX_REQUEST_MS);
    expect(hungServerBoundMs({ minBytesPerSec: 1, segmentBytes: 64 * MiB })).toBe(2 * MAX_REQUEST_MS);
  });
});

for (const dataPath of ['native', 'glide'] as const) {
describe(`a Valkey stopped with SIGSTOP (${dataPath} data path)`, () => {
  it('get, getInto, contains and put end within the bound; the tier goes down, then comes back after SIGCONT', async () => {
    const server = await startValkey();
    const pid = await serverPid(server);
    const options: ValkeyTierOptions = { url: server.url, dataPath, log: quiet, reconnectMaxMs: 1000 };
    const bound = hungServerBoundMs(options);
    const reconnectBoundMs = VALKEY_DEFAULTS.connectTimeoutMs + 1.25 * 1000 + 2 * bound;
    const tier = await ValkeyTier.create(options);
    try {
      expect(tier.available).toBe(true);
      const big = randomChunkKey();
      const small = randomChunkKey();
      const bigValue = randomBytes(3 * MiB + 7);
      const smallValue = randomBytes(5000);
      expect(await tier.put(big, bigValue)).toBe(true);
      expect(await tier.put(small, smallValue)).toBe(true);
      // One get learns the namespace's shape, so later gets prefetch segments too.
      expect((await tier.get(big))!.equals(bigValue)).toBe(true);

      pause(pid);
      const stoppedAt = performance.now();
      const skippedBefore = tier.counters.skipped;
      const calls = await Promise.all([
        timed(tier.get(big)),
        timed(tier.get(small)),
        timed(tier.getInto(big, (n) => ({ buf: Buffer.alloc(n), release: () => undefined }))),
        timed(tier.contains([big, small])),
        timed(tier.put(randomChunkKey(), randomBytes(3 * MiB))),
        timed(tier.put(randomChunkKey(), randomBytes(1000))),
      ]);
      const [getBig, getSmall, getInto, contains, putBig, putSmall] = calls;
      expect(getBig.value).toBeNull();
      expect(getSmall.value).toBeNull();
      expect(getInto.value).toBeNull();
      expect(contains.value).toEqual([false, false]);
      expect(putBig.value).toBe(false);
      expect(putSmall.value).toBe(false);
      for (const c of calls) expect(c.ms).toBeLessThanOrEqual(bound + SLACK_MS);
      expect(tier.counters.skipped).toBe(skippedBefore + 2);
      // Marked down within the bound of the stop (one timeout, one failed PING).
      await until('tier down', () => !tier.available, Math.max(0, bound + SLACK_MS - (performance.now() - stoppedAt)));
      expect(tier.lastError?.code).toBe('KVT_VALKEY_UNAVAILABLE');

      // Down: calls miss at once, stores are skipped and counted.
      const fast = await Promise.all([timed(tier.get(big)), timed(tier.contains([small])), timed(tier.put(randomChunkKey(), randomBytes(100)))]);
      expect(fast.map((c) => c.value)).toEqual([null, [false], false]);
      for (const c of fast) expect(c.ms).toBeLessThan(100);
      expect(tier.counters.skipped).toBe(skippedBefore + 3);

      // Keep it stopped for 3 s, across several reconnect attempts.
      await new Promise((r) => setTimeout(r, Math.max(0, 3000 - (performance.now() - stoppedAt))));
      expect(tier.available).toBe(false);
      resume(pid);
      await until('tier up after SIGCONT', () => tier.available, reconnectBoundMs);
      const k = randomChunkKey();
      const v = randomBytes(2 * MiB + 3);
      expect(await tier.put(k, v)).toBe(true);
      expect((await tier.get(k))!.equals(v)).toBe(true);
      // What was stored before the stop is still there (the process never died).
      expect((await tier.get(big))!.equals(bigValue)).toBe(true);
      expect(await tier.contains([small])).toEqual([true]);
    } finally {
      if (stopped.has(pid)) resume(pid);
      await tier.close();
      await server.stop();
    }
  }, 60_000);

  it('megabytes of small stores queued on every connection do not stretch the bound', async () => {
    const server = await startValkey();
    const pid = await serverPid(server);
    // A slow link is assumed (1 MB/s), so bytes queued ahead would count for seconds.
    const options: ValkeyTierOptions = { url: server.url, dataPath, log: quiet, minBytesPerSec: 1e6, segmentBytes: 64 * 1024, reconnectMaxMs: 1000 };
    const bound = hungServerBoundMs(options);
    const tier = await ValkeyTier.create(options);
    try {
      const k = randomChunkKey();
      expect(await tier.put(k, randomBytes(1000))).toBe(true);
      pause(pid);
      // 200 stores of 60 KiB (below the bulk size: they pipeline), ~3 MB per connection.
      const t0 = performance.now();
      const puts = Array.from({ length: 200 }, () => tier.put(randomChunkKey(), randomBytes(60 * 1024)));
      await new Promise((r) => setImmediate(r)); // the stores are on their connections now
      const probes = await Promise.all([timed(tier.contains([k])), timed(tier.get(k))]);
      expect(probes[0].value).toEqual([false]);
      expect(probes[1].value).toBeNull();
      for (const c of probes) expect(c.ms).toBeLessThanOrEqual(bound + SLACK_MS);
      expect((await Promise.all(puts)).every((ok) => !ok)).toBe(true);
      expect(performance.now() - t0).toBeLessThanOrEqual(bound + SLACK_MS);
      await until('tier down', () => !tier.available, Math.max(0, bound + SLACK_MS - (performance.now() - t0)));
      resume(pid);
      await until('tier up after SIGCONT', () => tier.available, 10_000);
      expect(await tier.contains([k])).toEqual([true]);
    } finally {
      if (stopped.has(pid)) resume(pid);
      await tier.close();
      await server.stop();
    }
  }, 60_000);

  it('a manifest claiming 512 MiB segments does not stretch a lookup or the PING', async () => {
    // The segment size the last manifest of a namespace had is what a read
    // expects, and counts as bytes queued on the connection; the limits do
    // not grow with it past the ceiling (before: 1000 ms + 512 MiB / 16 MB/s).
    const server = await startValkey();
    const pid = await serverPid(server);
    const options: ValkeyTierOptions = { url: server.url, dataPath, log: quiet, connections: 1, reconnectMaxMs: 1000 };
    const bound = hungServerBoundMs(options);
    const tier = await ValkeyTier.create(options);
    try {
      const forgedKey = randomChunkKey();
      const seg = 512 * MiB;
      const raw = await GlideClient.createClient({ addresses: [{ host: server.host, port: server.port }], defaultDecoder: Decoder.Bytes, requestTimeout: 5000 });
      try {
        await raw.set(tier.keyOf(forgedKey), encodeValue({ v: FORMAT_VERSION, ns: forgedKey.namespaceId, serde: 'naive', raw: seg, len: seg, seg, segs: ['0000000000000000'] }));
      } finally {
        raw.close();
      }
      expect(await tier.get(forgedKey)).toBeNull(); // its segment is absent: a miss, and the shape is remembered
      const other = randomChunkKey(forgedKey.namespaceId);
      pause(pid);
      const t0 = performance.now();
      const read = tier.get(other);
      await new Promise((r) => setImmediate(r));
      const lookup = await timed(tier.contains([other]));
      expect(lookup.value).toEqual([false]);
      expect(lookup.ms).toBeLessThanOrEqual(bound + SLACK_MS);
      expect(await read).toBeNull();
      await until('tier down', () => !tier.available, Math.max(0, bound + SLACK_MS - (performance.now() - t0)));
    } finally {
      if (stopped.has(pid)) resume(pid);
      await tier.close();
      await server.stop();
    }
  }, 60_000);
});
}
