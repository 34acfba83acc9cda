/**
 * A fleet: daemons that share one real valkey-server (single and a 3-master
 * cluster). A chunk stored through daemon A is found and retrieved,
 * byte-exact, through daemon B; Valkey dying and coming back, and a value
 * corrupted behind kvtier's back, never make a daemon serve wrong bytes.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeNamespace } from '../../src/chunking/namespace.js';
import { hashHex, hashTokenChunks } from '../../src/chunking/prefix-hash.js';
import { packTokens } from '../../src/chunking/tokens.js';
import { ChunkId } from '../../src/tiers/chunk-id.js';
import { chunkRedisKey, segmentRedisKey } from '../../src/tiers/valkey-format.js';
import { startTestDaemon, waitFor, type TestDaemon } from '../helpers/daemon.js';
import { freePort, startValkey, startValkeyCluster, stopAllValkey, type ValkeyServer } from '../../bench/valkey-server.js';
import { createLogger } from '../../src/log.js';

const MiB = 1 << 20;
const tokens = (n: number, seed: number): Buffer => packTokens(Array.from({ length: n }, (_, i) => (i * 104729 + seed) % 128_000));
const fp = { model: 'fleet-model', dtype: 'bfloat16', kvLayout: 'test' };

afterAll(async () => {
  await stopAllValkey();
});

/** `settleMs`: after a Valkey restart, each glide connection of B may need a moment to come back. */
async function shareAndCheck(a: TestDaemon, b: TestDaemon, seed: number, settleMs = 0): Promise<void> {
  const ca = await a.connect({ fingerprint: fp });
  const cb = await b.connect({ fingerprint: fp });
  const t = tokens(4 * 256 + 17, seed);
  // Segmented (3 MiB + odd) and small chunks.
  const chunks = [randomBytes(3 * MiB + 5), randomBytes(4096), randomBytes(MiB), randomBytes(2 * MiB + 1)];
  if (settleMs > 0) {
    // Just after a restart a glide connection may still be reconnecting and
    // time a store out (a skipped store, counted): the tier must come back
    // within settleMs, so store until every chunk commits.
    await waitFor(async () => {
      await ca.invalidate({ tokens: t });
      const s = await ca.store({ address: { tokens: t }, chunks });
      return (await s.committed).committedChunks === 4;
    }, 'A commits all four chunks to Valkey', settleMs);
  } else {
    const s = await ca.store({ address: { tokens: t }, chunks });
    expect(s.copied.storedChunks).toBe(4);
    expect(await s.committed).toMatchObject({ committedChunks: 4 });
  }

  if (settleMs > 0) {
    // Settled means three lookups in a row see the chunks: until each glide
    // connection has come back a lookup may time out, which is a miss.
    let streak = 0;
    await waitFor(async () => {
      streak = (await cb.lookup({ tokens: t }, { noLease: true })).hitChunks === 4 ? streak + 1 : 0;
      return streak >= 3;
    }, 'B sees the chunks', settleMs);
  }
  const l = await cb.lookup({ tokens: t });
  expect(l.hitChunks).toBe(4);
  expect(l.hitTokens).toBe(1024);
  expect(l.valkeyChunks).toBe(4);
  const r = await cb.retrieve({ leaseId: l.leaseId });
  expect(r.loadedChunks).toBe(4);
  r.chunks.forEach((c, i) => expect(Buffer.from(c).equals(chunks[i])).toBe(true));
  await cb.releaseLease(l.leaseId);
  // Promoted: B now has them in its host tier.
  expect((await cb.lookup({ tokens: t }, { noLease: true })).hostChunks).toBe(4);
}

describe('two daemons, one single Valkey', () => {
  let valkey: ValkeyServer;
  let a: TestDaemon;
  let b: TestDaemon;
  beforeAll(async () => {
    valkey = await startValkey({ maxmemory: '512mb', maxmemoryPolicy: 'allkeys-lru' });
    a = await startTestDaemon({ remote_url: valkey.url, valkey_connections: 2 });
    b = await startTestDaemon({ remote_url: valkey.url, valkey_connections: 2 });
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  it('a chunk stored through A is retrieved byte-exact through B', async () => {
    await shareAndCheck(a, b, 1);
  });

  it('another tenant (cache_salt) never gets the chunks through Valkey', async () => {
    const ca = await a.connect({ fingerprint: { ...fp, cacheSalt: 'tenant-a' } });
    const cb = await b.connect({ fingerprint: { ...fp, cacheSalt: 'tenant-b' } });
    const t = tokens(512, 2);
    await (await ca.store({ address: { tokens: t }, chunks: [randomBytes(1000), randomBytes(1000)] })).committed;
    expect((await cb.lookup({ tokens: t }, { noLease: true })).hitChunks).toBe(0);
  });

  it('a value corrupted in Valkey behind kvtier is a miss, never wrong bytes', async () => {
    const ca = await a.connect({ fingerprint: fp });
    const cb = await b.connect({ fingerprint: fp });
    const t = tokens(512, 3);
    const chunks = [randomBytes(2 * MiB + 3), randomBytes(5000)];
    await (await ca.store({ address: { tokens: t }, chunks })).committed;
    const ns = makeNamespace({ ...fp, chunkSize: 256, blockSize: 0, tpRank: 0, tpSize: 0, ppRank: 0, ppSize: 0, mla: false, cacheSalt: '' });
    expect(ca.hello!.namespaceId).toBe(ns.id);
    const { hashes } = hashTokenChunks(ns.root, t, 256, false);
    const k0 = chunkRedisKey('kvtier', ChunkId.of(ns.id, hashHex(hashes, 0)));
    const k1 = chunkRedisKey('kvtier', ChunkId.of(ns.id, hashHex(hashes, 1)));
    // Flip bytes inside a segment of chunk 0 and inside the inline value of chunk 1.
    await valkey.cli(['SETRANGE', segmentRedisKey(k0, 1), '1000', 'XXXX']);
    const v1 = await valkey.cli(['STRLEN', k1]);
    await valkey.cli(['SETRANGE', k1, String(Number(v1) - 10), 'YYYY']);

    const l = await cb.lookup({ tokens: t });
    const r = await cb.retrieve({ leaseId: l.leaseId });
    expect(r.loadedChunks).toBe(0);
    expect(r.chunks.every((c) => c.length === 0)).toBe(true);
    await cb.releaseLease(l.leaseId);
    // The bad keys were deleted: the next lookup finds nothing.
    await waitFor(async () => (await cb.lookup({ tokens: t }, { noLease: true })).hitChunks === 0, 'bad chunks deleted');
    expect(Number((b.daemon.stats().remote.detail as { corrupt: number }).corrupt)).toBeGreaterThanOrEqual(2);
  });

  it('Valkey killed mid-run: stores are skipped, lookups use the host tier; it comes back by itself', async () => {
    const ca = await a.connect({ fingerprint: fp });
    const cb = await b.connect({ fingerprint: fp });
    const before = tokens(256, 4);
    const chunk = randomBytes(100_000);
    await (await ca.store({ address: { tokens: before }, chunks: [chunk] })).committed;

    await valkey.kill();
    const during = tokens(256, 5);
    const s = await ca.store({ address: { tokens: during }, chunks: [randomBytes(1000)] });
    expect(s.copied.storedChunks).toBe(1);
    expect((await s.committed).failedChunks).toBe(1);
    // A still serves from its host tier; B has nothing and says so quickly.
    const la = await ca.lookup({ tokens: before }, { noLease: true });
    expect(la.hostChunks).toBe(1);
    expect((await cb.lookup({ tokens: during }, { noLease: true })).hitChunks).toBe(0);

    await valkey.restart();
    await waitFor(() => a.daemon.stats().remote.available && b.daemon.stats().remote.available, 'Valkey back', 30_000);
    await shareAndCheck(a, b, 6, 30_000);
  }, 90_000);
});

describe('two daemons on the two data paths (valkey_data_path native and glide), one Valkey', () => {
  let a: TestDaemon;
  let b: TestDaemon;
  beforeAll(async () => {
    const valkey = await startValkey();
    a = await startTestDaemon({ remote_url: valkey.url, valkey_data_path: 'native' });
    b = await startTestDaemon({ remote_url: valkey.url, valkey_data_path: 'glide' });
  }, 60_000);
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  it('each says in stats which path moves its bytes, and why', () => {
    expect(a.daemon.stats().remote.detail).toMatchObject({ dataPath: 'native' });
    expect(b.daemon.stats().remote.detail).toMatchObject({ dataPath: 'glide', dataPathReason: 'valkey_data_path: glide' });
  });

  it('chunks written natively are read through glide, and the other way round, byte-exact', async () => {
    await shareAndCheck(a, b, 11);
    await shareAndCheck(b, a, 12);
    expect((a.daemon.stats().remote.detail as { native: { jobs: number } }).native.jobs).toBeGreaterThan(0);
  });
});

describe('two daemons, one 3-master Valkey cluster', () => {
  let url: string;
  let a: TestDaemon;
  let b: TestDaemon;
  beforeAll(async () => {
    url = (await startValkeyCluster()).url;
    a = await startTestDaemon({ remote_url: url, valkey_connections: 2 });
    b = await startTestDaemon({ remote_url: url, valkey_connections: 2 });
  }, 120_000);
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  it('a chunk stored through A is retrieved byte-exact through B, both on the native data path', async () => {
    await shareAndCheck(a, b, 7);
    for (const d of [a, b]) {
      const detail = d.daemon.stats().remote.detail as { dataPath: string; dataPathReason: string; native: { jobs: number } };
      expect(detail.dataPath).toBe('native');
      expect(detail.dataPathReason).toMatch(/each of 3 cluster nodes/);
      expect(detail.native.jobs).toBeGreaterThan(0);
    }
  });
});

describe('a daemon and a Valkey that is not there yet, or refuses it', () => {
  it('starts with the host tier, says so, and uses Valkey once it appears', async () => {
    const port = await freePort();
    const lines: string[] = [];
    const d = await startTestDaemon({ remote_url: `valkey://127.0.0.1:${port}` }, { logger: createLogger('info', {}, (l) => lines.push(l)) });
    try {
      expect(d.daemon.stats().remote).toMatchObject({ configured: true, available: false });
      expect(lines.join('')).toMatch(/not reachable yet/);
      const c = await d.connect({ fingerprint: fp });
      const early = await c.store({ address: { tokens: tokens(256, 40) }, chunks: [randomBytes(1000)] });
      expect(early.copied.storedChunks).toBe(1);
      expect((await early.committed).failedChunks).toBe(1);
      const valkey = await startValkey({}, port);
      await waitFor(() => d.daemon.stats().remote.available, 'Valkey seen', 20_000);
      const later = await c.store({ address: { tokens: tokens(256, 41) }, chunks: [randomBytes(1000)] });
      expect((await later.committed).committedChunks).toBe(1);
      await valkey.stop();
    } finally {
      await d.stop();
    }
  }, 60_000);

  it('a wrong password is an error naming the URL without the password; the host tier still serves', async () => {
    const valkey = await startValkey({ requirepass: 'right-secret' });
    const lines: string[] = [];
    const url = `valkey://:wrong-secret@127.0.0.1:${valkey.port}`;
    const d = await startTestDaemon({ remote_url: url }, { logger: createLogger('info', {}, (l) => lines.push(l)) });
    try {
      const log = lines.join('');
      expect(log).toMatch(/valkey tier disabled/);
      expect(log).toContain(`127.0.0.1:${valkey.port}`);
      expect(log).not.toContain('wrong-secret');
      expect(d.daemon.stats().remote.configured).toBe(false);
      const c = await d.connect({ fingerprint: fp });
      await c.put(Buffer.from('k'), Buffer.from('v'));
      expect((await c.get(Buffer.from('k')))!.toString()).toBe('v');
    } finally {
      await d.stop();
      await valkey.stop();
    }
  }, 60_000);
});
