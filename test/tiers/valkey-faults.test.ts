/**
 * Faults against real valkey-servers: absent at start, killed and restarted,
 * eviction, out of memory, values corrupted behind the tier's back, another
 * namespace's header, wrong password. In every case: no exception from the
 * tier, no unhandled rejection, and never wrong bytes served.
 */

import { randomBytes } from 'node:crypto';
import { Decoder, GlideClient } from '@valkey/valkey-glide';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ValkeyAuthError } from '../../src/errors.js';
import { ChunkId } from '../../src/tiers/chunk-id.js';
import { encodeValue, FORMAT_VERSION } from '../../src/tiers/valkey-format.js';
import { ValkeyTier, type ValkeyTierOptions } from '../../src/tiers/valkey-tier.js';
import { freePort, startValkey, stopAllValkey, type ValkeyServer } from '../../bench/valkey-server.js';
import { randomChunkKey } from './tier-contract.js';

const MiB = 1 << 20;
const quiet = (): void => undefined;
const unhandled: unknown[] = [];
const onUnhandled = (e: unknown): void => {
  unhandled.push(e);
};

beforeAll(() => {
  process.on('unhandledRejection', onUnhandled);
});
afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  await stopAllValkey();
});

const tiers: ValkeyTier[] = [];
afterEach(async () => {
  await Promise.all(tiers.splice(0).map((t) => t.close()));
  expect(unhandled).toEqual([]);
});

async function openTier(options: ValkeyTierOptions): Promise<ValkeyTier> {
  const t = await ValkeyTier.create({ log: quiet, reconnectMinMs: 50, reconnectMaxMs: 300, connectTimeoutMs: 300, requestTimeoutMs: 5000, ...options });
  tiers.push(t);
  return t;
}

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function rawClient(server: ValkeyServer): Promise<GlideClient> {
  return GlideClient.createClient({ addresses: [{ host: server.host, port: server.port }], defaultDecoder: Decoder.Bytes, requestTimeout: 5000 });
}

// Every fault on both data paths: segments through the addon's I/O threads, and through glide.
for (const dataPath of ['native', 'glide'] as const) {
const open = (options: ValkeyTierOptions): Promise<ValkeyTier> => openTier({ dataPath, ...options });

describe(`valkey tier faults (${dataPath} data path)`, () => {
  it('uses the data path it was asked for', async () => {
    const server = await startValkey();
    const tier = await open({ url: server.url, segmentBytes: 256 * 1024 });
    expect(tier.dataPath.path).toBe(dataPath);
    const k = randomChunkKey();
    const v = randomBytes(MiB + 5);
    expect(await tier.put(k, v)).toBe(true);
    expect((await tier.get(k))!.equals(v)).toBe(true);
    const native = tier.stats().native as { jobs: number } | null;
    if (dataPath === 'native') expect(native!.jobs).toBeGreaterThanOrEqual(2);
    else expect(native).toBeNull();
    await server.stop();
  });
  it('Valkey absent at start: down, skips and misses, then resumes when it appears', async () => {
    const port = await freePort();
    const events: boolean[] = [];
    const tier = await open({ url: `valkey://127.0.0.1:${port}`, onAvailability: (up) => events.push(up) });
    const k = randomChunkKey();
    expect(tier.available).toBe(false);
    expect(tier.lastError?.code).toBe('KVT_VALKEY_UNAVAILABLE');
    expect(await tier.put(k, randomBytes(100))).toBe(false);
    expect(await tier.get(k)).toBeNull();
    expect(await tier.contains([k])).toEqual([false]);
    expect(tier.counters.skipped).toBe(1);

    const server = await startValkey({}, port);
    await until('tier up', () => tier.available);
    expect(events).toEqual([false, true]);
    const v = randomBytes(3 * MiB);
    expect(await tier.put(k, v)).toBe(true);
    expect((await tier.get(k))!.equals(v)).toBe(true);
    await server.stop();
  }, 30_000);

  it('Valkey killed mid-run and restarted: nothing thrown, nothing wrong served, resumes', async () => {
    const server = await startValkey();
    const tier = await open({ url: server.url, segmentBytes: 256 * 1024, requestTimeoutMs: 1000 });
    const stored = new Map<string, Buffer>();
    let stop = false;
    let wrong = 0;
    const worker = async (): Promise<void> => {
      while (!stop) {
        const k = randomChunkKey();
        const v = randomBytes(512 * 1024 + Math.floor(Math.random() * MiB));
        if (await tier.put(k, v)) stored.set(k.hash, v);
        const got = await tier.get(k);
        if (got && !got.equals(v)) wrong++;
        await new Promise((r) => setTimeout(r, 1));
      }
    };
    const workers = [worker(), worker(), worker()];
    await until('some stores', () => tier.counters.stores >= 5);
    await server.kill();
    await until('tier down', () => !tier.available, 15_000);
    expect(await tier.put(randomChunkKey(), randomBytes(10))).toBe(false);
    const skippedWhileDown = tier.counters.skipped;
    expect(skippedWhileDown).toBeGreaterThan(0);
    await server.restart();
    await until('tier up again', () => tier.available, 10_000);
    const storesAfter = tier.counters.stores;
    await until('stores after restart', () => tier.counters.stores >= storesAfter + 5);
    stop = true;
    await Promise.all(workers);
    expect(wrong).toBe(0);
    expect(tier.counters.reconnects).toBeGreaterThanOrEqual(1);
    // Chunks stored before the crash are gone (no persistence): misses, not errors.
    for (const [hash, v] of [...stored].slice(0, 20)) {
      const got = await tier.get(ChunkId.of('ns-contract', hash));
      if (got) expect(got.equals(v)).toBe(true);
    }
    await server.stop();
  }, 90_000);

  it('maxmemory + allkeys-lru: evicted chunks and evicted segments are misses', async () => {
    const server = await startValkey({ maxmemory: '24mb', maxmemoryPolicy: 'allkeys-lru' });
    const tier = await open({ url: server.url, segmentBytes: 512 * 1024 });
    const items = Array.from({ length: 24 }, () => ({ k: randomChunkKey(), v: randomBytes(2 * MiB + 100) }));
    for (const { k, v } of items) expect(await tier.put(k, v)).toBe(true);
    let hits = 0;
    for (const { k, v } of items) {
      const got = await tier.get(k);
      if (got) {
        expect(got.equals(v)).toBe(true);
        hits++;
      }
    }
    expect(hits).toBeLessThan(items.length);
    expect(tier.counters.misses).toBeGreaterThan(0);
    await server.stop();
  }, 90_000);

  it('a manifest whose segment is gone is a miss, and the chunk is deleted', async () => {
    const server = await startValkey();
    const tier = await open({ url: server.url, segmentBytes: 256 * 1024 });
    const k = randomChunkKey();
    await tier.put(k, randomBytes(MiB));
    const base = tier.keyOf(k);
    expect(await server.cli(['DEL', `${base}:s2`])).toContain('1');
    expect(await tier.get(k)).toBeNull();
    expect(tier.counters.incomplete).toBe(1);
    expect((await server.cli(['EXISTS', base, `${base}:s0`, `${base}:s3`])).trim()).toBe('0');
    await server.stop();
  });

  it('maxmemory + noeviction: puts are skipped (false), not thrown', async () => {
    const server = await startValkey({ maxmemory: '8mb', maxmemoryPolicy: 'noeviction' });
    const tier = await open({ url: server.url });
    const results: boolean[] = [];
    for (let i = 0; i < 12; i++) results.push(await tier.put(randomChunkKey(), randomBytes(MiB)));
    expect(results).toContain(false);
    expect(tier.counters.skipped).toBeGreaterThan(0);
    expect(tier.available).toBe(true);
    await server.stop();
  });

  describe('corruption written behind the tier', () => {
    let server: ValkeyServer;
    beforeAll(async () => {
      server = await startValkey();
    });

    async function corruptAndGet(size: number, target: (base: string) => string, offset: number): Promise<{ tier: ValkeyTier; base: string }> {
      const tier = await open({ url: server.url, segmentBytes: 256 * 1024 });
      const k = randomChunkKey();
      await tier.put(k, randomBytes(size));
      const base = tier.keyOf(k);
      // 16 bytes: a single byte could equal what is already there (1 in 256).
      await server.cli(['SETRANGE', target(base), String(offset), 'corrupted-bytes!']);
      expect(await tier.get(k)).toBeNull();
      expect(tier.counters.corrupt).toBe(1);
      expect(tier.counters.hits).toBe(0);
      return { tier, base };
    }

    it('a flipped byte in an inline payload: miss, key deleted', async () => {
      const { base } = await corruptAndGet(50_000, (b) => b, 30_000);
      expect((await server.cli(['EXISTS', base])).trim()).toBe('0');
    });

    it('a flipped byte in a segment: miss, manifest and segments deleted', async () => {
      const { base } = await corruptAndGet(MiB, (b) => `${b}:s1`, 1000);
      expect((await server.cli(['EXISTS', base, `${base}:s0`, `${base}:s1`, `${base}:s3`])).trim()).toBe('0');
    });

    it('after a good read (so the next read is one job for manifest and segments): a flipped byte, a lost segment', async () => {
      const tier = await open({ url: server.url, segmentBytes: 256 * 1024 });
      const [a, b, c] = [randomChunkKey(), randomChunkKey(), randomChunkKey()];
      const v = randomBytes(MiB + 3);
      for (const k of [a, b, c]) expect(await tier.put(k, v)).toBe(true);
      expect((await tier.get(a))!.equals(v)).toBe(true);
      await server.cli(['SETRANGE', `${tier.keyOf(b)}:s2`, '77', 'corrupted-bytes!']);
      expect(await tier.get(b)).toBeNull();
      expect(tier.counters.corrupt).toBe(1);
      expect((await server.cli(['EXISTS', tier.keyOf(b), `${tier.keyOf(b)}:s2`])).trim()).toBe('0');
      await server.cli(['DEL', `${tier.keyOf(c)}:s4`]);
      expect(await tier.get(c)).toBeNull();
      expect(tier.counters.incomplete).toBe(1);
      expect((await server.cli(['EXISTS', tier.keyOf(c)])).trim()).toBe('0');
      expect((await tier.get(a))!.equals(v)).toBe(true);
    });

    it('a segment grown by SETRANGE past its end: miss', async () => {
      await corruptAndGet(MiB, (b) => `${b}:s3`, 256 * 1024);
    });

    it('a broken header: miss, key deleted', async () => {
      const { base } = await corruptAndGet(100, (b) => b, 0);
      expect((await server.cli(['EXISTS', base])).trim()).toBe('0');
    });

    it('a forged manifest claiming a huge chunk: miss, nothing allocated, key deleted', async () => {
      const tier = await open({ url: server.url });
      const k = randomChunkKey();
      const forged = encodeValue({ v: FORMAT_VERSION, ns: k.namespaceId, serde: 'naive', raw: 2 ** 40, len: 2 ** 40, seg: 2 ** 40, segs: ['0000000000000000'] });
      const raw = await rawClient(server);
      try {
        await raw.set(tier.keyOf(k), forged);
      } finally {
        raw.close();
      }
      expect(await tier.get(k)).toBeNull();
      expect(tier.counters.corrupt).toBe(1);
      expect((await server.cli(['EXISTS', tier.keyOf(k)])).trim()).toBe('0');
    });

    it('another namespace header under the key: miss, key deleted', async () => {
      const tier = await open({ url: server.url });
      const mine: ChunkId = randomChunkKey('ns-a');
      const other: ChunkId = ChunkId.of('ns-b', mine.hash);
      await tier.put(mine, randomBytes(4096));
      const raw = await rawClient(server);
      try {
        const value = await raw.get(tier.keyOf(mine));
        expect(Buffer.isBuffer(value)).toBe(true);
        await raw.set(tier.keyOf(other), value as Buffer);
      } finally {
        raw.close();
      }
      expect(await tier.get(other)).toBeNull();
      expect(tier.counters.corrupt).toBe(1);
      expect((await server.cli(['EXISTS', tier.keyOf(other)])).trim()).toBe('0');
      expect(await tier.get(mine)).not.toBeNull();
    });
  });

  describe('authentication', () => {
    let server: ValkeyServer;
    beforeAll(async () => {
      server = await startValkey({ requirepass: 'right-pass' });
    });

    it('a wrong password is a ValkeyAuthError naming the redacted URL', async () => {
      const url = `valkey://default:wrong-pass@127.0.0.1:${server.port}`;
      const err = await ValkeyTier.create({ url, log: quiet, connectTimeoutMs: 1000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ValkeyAuthError);
      const msg = (err as Error).message;
      expect(msg).toContain(`valkey://default:***@127.0.0.1:${server.port}`);
      expect(msg).not.toContain('wrong-pass');
    });

    it('no password against requirepass is a ValkeyAuthError too', async () => {
      const err = await ValkeyTier.create({ url: `valkey://127.0.0.1:${server.port}`, log: quiet }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ValkeyAuthError);
    });

    it('the right password, user and database work', async () => {
      const tier = await open({ url: `valkey://default:right-pass@127.0.0.1:${server.port}/3`, segmentBytes: 256 * 1024 });
      const k = randomChunkKey();
      expect(await tier.put(k, Buffer.from('x'))).toBe(true);
      expect((await server.cli(['-n', '3', 'EXISTS', tier.keyOf(k)])).trim()).toBe('1');
      expect((await server.cli(['-n', '0', 'EXISTS', tier.keyOf(k)])).trim()).toBe('0');
      // Segmented: on the native path these bytes go over the addon's own authenticated connections.
      const big = randomChunkKey();
      const v = randomBytes(MiB + 1);
      expect(await tier.put(big, v)).toBe(true);
      expect((await server.cli(['-n', '3', 'EXISTS', `${tier.keyOf(big)}:s4`])).trim()).toBe('1');
      expect((await tier.get(big))!.equals(v)).toBe(true);
      expect((await tier.get(big))!.equals(v)).toBe(true);
    });
  });

  it('ttl: keys expire, segments after their manifest', async () => {
    const server = await startValkey();
    const tier = await open({ url: server.url, ttlSecs: 30, segmentBytes: 256 * 1024 });
    const k = randomChunkKey();
    await tier.put(k, randomBytes(MiB));
    const base = tier.keyOf(k);
    const ttlManifest = Number((await server.cli(['TTL', base])).trim());
    const ttlSegment = Number((await server.cli(['TTL', `${base}:s0`])).trim());
    expect(ttlManifest).toBeGreaterThan(25);
    expect(ttlManifest).toBeLessThanOrEqual(30);
    expect(ttlSegment).toBeGreaterThan(ttlManifest);
    await server.stop();
  });
});
}
