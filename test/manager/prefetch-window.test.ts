/**
 * The prefetch window (src/manager/prefetch-window.ts), through two daemons
 * and a real valkey-server: daemon A stores chunks, daemon B (a 1 MiB window,
 * 512 KiB chunks: two fetches at a time) finds them only in Valkey.
 *
 * What a user would check: a Lookup past the window still loads every chunk
 * byte-exact; a chunk read out once is a failed chunk on a second Retrieve
 * (never another chunk's bytes from a reused slab); a released lease with
 * fetches still queued starts no more Valkey reads and leaves nothing pinned
 * (`kvtier stats`: host pinned bytes, Valkey fetched chunks).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeAvailable, type KvLayoutSpec } from '../../native/index.js';
import { packTokens } from '../../src/chunking/tokens.js';
import type { KvtierClient } from '../../src/protocol/client.js';
import { startValkey, stopAllValkey, type ValkeyServer } from '../../bench/valkey-server.js';
import { startTestDaemon, waitFor, type TestDaemon } from '../helpers/daemon.js';
import { flashAttn } from '../native/shm-fixture.js';

const KiB = 1 << 10;
const CHUNKS = 16;
const fp = { model: 'window-model', dtype: 'bfloat16', kvLayout: 'test' };
const tokens = (seed: number): Buffer => packTokens(Array.from({ length: CHUNKS * 256 }, (_, i) => (i * 104729 + seed) % 128_000));

interface Stats {
  host: { pinnedBytes: number };
  counters: { remoteFetchedChunks: number };
}
const stats = async (c: KvtierClient): Promise<Stats> => (await c.stats()) as unknown as Stats;

describe('a Lookup fetches from Valkey a window at a time', () => {
  let valkey: ValkeyServer;
  let a: TestDaemon;
  let b: TestDaemon;
  let ca: KvtierClient;
  let cb: KvtierClient;
  beforeAll(async () => {
    valkey = await startValkey({ maxmemory: '256mb', maxmemoryPolicy: 'noeviction' });
    a = await startTestDaemon({ remote_url: valkey.url });
    b = await startTestDaemon({ remote_url: valkey.url, prefetch_window_mb: 1 });
    ca = await a.connect({ fingerprint: fp });
    cb = await b.connect({ fingerprint: fp });
  }, 30_000);
  afterAll(async () => {
    await b?.stop();
    await a?.stop();
    await stopAllValkey();
  });

  /** CHUNKS chunks of 512 KiB into Valkey through A (or `via`); their bytes. */
  async function storeInValkey(seed: number, via = ca): Promise<Buffer[]> {
    const chunks = Array.from({ length: CHUNKS }, () => randomBytes(512 * KiB));
    const s = await via.store({ address: { tokens: tokens(seed) }, chunks });
    expect((await s.committed).committedChunks).toBe(CHUNKS);
    return chunks;
  }

  it('loads every chunk of a context eight times the window, byte-exact, and reads each only once', async () => {
    const chunks = await storeInValkey(1);
    const l = await cb.lookup({ tokens: tokens(1) });
    expect({ hit: l.hitChunks, valkey: l.valkeyChunks }).toEqual({ hit: CHUNKS, valkey: CHUNKS });
    // One chunk at a time, as a worker reading in order would.
    for (let i = 0; i < CHUNKS; i++) {
      const r = await cb.retrieve({ leaseId: l.leaseId, firstChunk: i, numChunks: 1 });
      expect({ chunk: i, loaded: r.loadedChunks, same: Buffer.from(r.chunks[0]).equals(chunks[i]) }).toEqual({ chunk: i, loaded: 1, same: true });
    }
    // Read out: its lease pin is gone and its slab may be reused, so a second read is a failed chunk.
    const again = await cb.retrieve({ leaseId: l.leaseId, firstChunk: 3, numChunks: 2 });
    expect({ loaded: again.loadedChunks, failed: again.failedChunks, bytes: again.chunks.map((c) => c.length) }).toEqual({ loaded: 0, failed: 2, bytes: [0, 0] });
    expect((await stats(cb)).host.pinnedBytes).toBe(0);
    await cb.releaseLease(l.leaseId);
  });

  it('a released lease with fetches queued starts no more and leaves nothing pinned', async () => {
    await storeInValkey(2);
    const before = (await stats(cb)).counters.remoteFetchedChunks;
    const l = await cb.lookup({ tokens: tokens(2) });
    expect(l.valkeyChunks).toBe(CHUNKS);
    // The window (1 MiB) holds two of the 512 KiB chunks; nothing reads them out.
    await waitFor(async () => (await stats(cb)).counters.remoteFetchedChunks - before >= 2, 'the first window lands');
    const held = await stats(cb);
    expect(held.counters.remoteFetchedChunks - before).toBe(2);
    expect(held.host.pinnedBytes).toBe(1024 * KiB);
    await cb.releaseLease(l.leaseId);
    // A queued fetch would start within a few ms of the release; give it ten times that.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const after = await stats(cb);
    expect({ fetched: after.counters.remoteFetchedChunks - before, pinned: after.host.pinnedBytes }).toEqual({ fetched: 2, pinned: 0 });
  });

  it('an expired lease with fetches queued starts no more and leaves nothing pinned', async () => {
    await storeInValkey(4);
    const before = (await stats(cb)).counters.remoteFetchedChunks;
    const l = await cb.lookup({ tokens: tokens(4) }, { leaseTtlMs: 300 });
    expect(l.valkeyChunks).toBe(CHUNKS);
    await waitFor(async () => (await stats(cb)).counters.remoteFetchedChunks - before >= 2, 'the first window lands');
    // The expiry sweep runs once a second.
    await waitFor(async () => (await stats(cb)).host.pinnedBytes === 0, 'the expired lease unpinned', 3000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await stats(cb)).counters.remoteFetchedChunks - before).toBe(2);
    await expect(cb.retrieve({ leaseId: l.leaseId })).rejects.toMatchObject({ code: 'KVT_LEASE_NOT_FOUND' });
  });

  it('MLA one copy: a chunk read out by one rank still loads for the other rank of its slot, and is unpinned once both have it', async () => {
    const mla = { ...fp, model: 'window-mla', tpSize: 2, ppSize: 1, mla: true };
    const chunks = await storeInValkey(3, await a.connect({ fingerprint: { ...mla, tpRank: 0 } }));
    const sched = await b.connect({ fingerprint: mla, lookupRanks: [{ tpRank: 0, ppRank: 0 }, { tpRank: 0, ppRank: 0 }] });
    // Both ranks load rank 0's one copy, in rank 0's namespace.
    const workers = [await b.connect({ fingerprint: { ...mla, tpRank: 0 } }), await b.connect({ fingerprint: { ...mla, tpRank: 0 } })];
    const l = await sched.lookup({ tokens: tokens(3) });
    expect({ hit: l.hitChunks, valkey: l.valkeyChunks, leases: l.leaseIds.length }).toEqual({ hit: CHUNKS, valkey: CHUNKS, leases: 2 });
    for (let r = 0; r < 2; r++) {
      for (let i = 0; i < CHUNKS; i++) {
        const got = await workers[r].retrieve({ leaseId: l.leaseIds[r], firstChunk: i, numChunks: 1 });
        expect({ rank: r, chunk: i, loaded: got.loadedChunks, same: Buffer.from(got.chunks[0]).equals(chunks[i]) }).toEqual({ rank: r, chunk: i, loaded: 1, same: true });
      }
      // Rank 0 done: rank 1's lease still holds every chunk; both done: nothing.
      expect({ rank: r, pinned: (await stats(cb)).host.pinnedBytes }).toEqual({ rank: r, pinned: r === 0 ? CHUNKS * 512 * KiB : 0 });
    }
    for (const id of l.leaseIds) await sched.releaseLease(Number(id));
  });

  // 2 MiB chunks through the 1 MiB window: one fetch at a time.
  it.skipIf(!nativeAvailable())('a block Retrieve of a later range first still loads, while the window holds a chunk it does not read', async () => {
    const shape = { layers: 2, numBlocks: CHUNKS * 16, blockSize: 16, heads: 8, headDim: 128, elemBytes: 2, chunkTokens: 256 };
    const src = flashAttn(shape);
    const dst = flashAttn(shape);
    const fpb = { ...fp, model: 'window-blocks' };
    const register = (c: KvtierClient, spec: KvLayoutSpec) =>
      c.registerKv({ regions: spec.regions.map((r) => ({ regionId: r.regionId, sizeBytes: r.sizeBytes, shmPath: r.shmPath })), planes: spec.planes, numBlocks: spec.numBlocks, blockSize: spec.blockSize });
    const u32 = (from: number, n: number): Buffer => Buffer.from(Uint32Array.from({ length: n }, (_, i) => from + i).buffer);
    try {
      const w = await a.connect({ fingerprint: fpb });
      await register(w, src.spec);
      const s = await w.store({ address: { tokens: tokens(5) }, blockIds: u32(0, CHUNKS * 16) });
      expect((await s.committed).committedChunks).toBe(CHUNKS);
      const r = await b.connect({ fingerprint: fpb });
      await register(r, dst.spec);
      const l = await r.lookup({ tokens: tokens(5) });
      expect(l.valkeyChunks).toBe(CHUNKS);
      // The first window is chunk 0; the worker asks for the second half first.
      const late = await r.retrieve({ leaseId: l.leaseId, firstChunk: CHUNKS / 2, numChunks: CHUNKS / 2, blockIds: u32((CHUNKS / 2) * 16, (CHUNKS / 2) * 16) });
      const early = await r.retrieve({ leaseId: l.leaseId, firstChunk: 0, numChunks: CHUNKS / 2, blockIds: u32(0, (CHUNKS / 2) * 16) });
      expect({ late: [late.loadedChunks, late.failedChunks], early: [early.loadedChunks, early.failedChunks] }).toEqual({ late: [CHUNKS / 2, 0], early: [CHUNKS / 2, 0] });
      await r.releaseLease(l.leaseId);
      const want = src.read();
      dst.read().forEach((region, k) => expect(region.equals(want[k]), `layer ${k}`).toBe(true));
    } finally {
      src.cleanup();
      dst.cleanup();
    }
  });
});

describe('the prefetch budget bounds every Lookup of a daemon together', () => {
  let valkey: ValkeyServer;
  let a: TestDaemon;
  let c: TestDaemon;
  beforeAll(async () => {
    valkey = await startValkey({ maxmemory: '256mb', maxmemoryPolicy: 'noeviction' });
    a = await startTestDaemon({ remote_url: valkey.url });
    // Each Lookup alone may hold four 512 KiB chunks; all of them together two.
    c = await startTestDaemon({ remote_url: valkey.url, prefetch_window_mb: 2, prefetch_budget_mb: 1 });
  }, 30_000);
  afterAll(async () => {
    await c?.stop();
    await a?.stop();
    await stopAllValkey();
  });

  interface Budget { prefetch: { budgetBytes: number; chargedBytes: number; waitingLookups: number; waits: number } }

  it('three concurrent Lookups hold the budget, not three windows, and each still loads every chunk byte-exact', async () => {
    const ca = await a.connect({ fingerprint: fp });
    const cc = await c.connect({ fingerprint: fp });
    const stored: Buffer[][] = [];
    for (const seed of [11, 12, 13]) {
      const chunks = Array.from({ length: CHUNKS }, () => randomBytes(512 * KiB));
      expect((await (await ca.store({ address: { tokens: tokens(seed) }, chunks })).committed).committedChunks).toBe(CHUNKS);
      stored.push(chunks);
    }
    // A host hit teaches the daemon this model's chunk size, so each fetch is charged from its start.
    expect((await (await cc.store({ address: { tokens: tokens(10) }, chunks: [randomBytes(512 * KiB)] })).committed).committedChunks).toBe(1);
    const warm = await cc.lookup({ tokens: tokens(10) });
    expect(warm.hostChunks).toBe(1);
    await cc.releaseLease(warm.leaseId);
    const before = (await stats(cc)).counters.remoteFetchedChunks;
    const leases = await Promise.all([11, 12, 13].map((seed) => cc.lookup({ tokens: tokens(seed) })));
    expect(leases.map((l) => l.valkeyChunks)).toEqual([CHUNKS, CHUNKS, CHUNKS]);
    await waitFor(async () => (await stats(cc)).counters.remoteFetchedChunks - before >= 2, 'the budget fills');
    // Ten times what a further fetch would need to start and land.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const held = (await stats(cc)) as Stats & Budget;
    // Three windows alone would hold 12 chunks (6 MiB) now; each of the three has more queued.
    expect({ fetched: held.counters.remoteFetchedChunks - before, pinned: held.host.pinnedBytes, charged: held.prefetch.chargedBytes, waiting: held.prefetch.waitingLookups })
      .toEqual({ fetched: 2, pinned: 1024 * KiB, charged: 1024 * KiB, waiting: 3 });
    // The last Lookup first: nothing of it is in flight, so its Retrieve starts its own, a chunk at a time.
    for (const k of [2, 0, 1]) {
      for (let i = 0; i < CHUNKS; i++) {
        const r = await cc.retrieve({ leaseId: leases[k].leaseId, firstChunk: i, numChunks: 1 });
        expect({ lookup: k, chunk: i, loaded: r.loadedChunks, same: Buffer.from(r.chunks[0]).equals(stored[k][i]) }).toEqual({ lookup: k, chunk: i, loaded: 1, same: true });
      }
    }
    for (const l of leases) await cc.releaseLease(l.leaseId);
    const after = (await stats(cc)) as Stats & Budget;
    expect({ pinned: after.host.pinnedBytes, charged: after.prefetch.chargedBytes, waiting: after.prefetch.waitingLookups, budget: after.prefetch.budgetBytes })
      .toEqual({ pinned: 0, charged: 0, waiting: 0, budget: 1024 * KiB });
    expect(after.prefetch.waits).toBeGreaterThanOrEqual(2);
  });
});

describe('the default prefetch budget: more concurrent large Lookups than the pool holds windows for', () => {
  const LOOKUPS = 5;
  const N = 32;
  const longTokens = (seed: number): Buffer => packTokens(Array.from({ length: N * 256 }, (_, i) => (i * 7919 + seed) % 128_000));
  let valkey: ValkeyServer;
  let a: TestDaemon;
  let c: TestDaemon;
  beforeAll(async () => {
    valkey = await startValkey({ maxmemory: '256mb', maxmemoryPolicy: 'noeviction' });
    a = await startTestDaemon({ remote_url: valkey.url });
    // A 32 MiB pool: each Lookup's window is 8 MiB, five of them 40 MiB; the budget is 16 MiB.
    c = await startTestDaemon({ remote_url: valkey.url, max_local_cpu_size: 32 / 1024 });
  }, 30_000);
  afterAll(async () => {
    await c?.stop();
    await a?.stop();
    await stopAllValkey();
  });

  it('five Lookups of 16 MiB each, read chunk by chunk in turn, all load byte-exact', async () => {
    const ca = await a.connect({ fingerprint: fp });
    const cc = await c.connect({ fingerprint: fp });
    const stored: Buffer[][] = [];
    for (let k = 0; k < LOOKUPS; k++) {
      const chunks = Array.from({ length: N }, () => randomBytes(512 * KiB));
      expect((await (await ca.store({ address: { tokens: longTokens(k) }, chunks })).committed).committedChunks).toBe(N);
      stored.push(chunks);
    }
    const leases = await Promise.all(stored.map((_, k) => cc.lookup({ tokens: longTokens(k) })));
    expect(leases.map((l) => l.valkeyChunks)).toEqual(stored.map(() => N));
    const failed: string[] = [];
    for (let i = 0; i < N; i++) {
      // Five workers' Retrieves at once, a chunk each.
      const got = await Promise.all(leases.map((l) => cc.retrieve({ leaseId: l.leaseId, firstChunk: i, numChunks: 1 })));
      got.forEach((r, k) => {
        if (r.loadedChunks !== 1 || !Buffer.from(r.chunks[0]).equals(stored[k][i])) failed.push(`lookup ${k} chunk ${i}`);
      });
    }
    expect(failed).toEqual([]);
    for (const l of leases) await cc.releaseLease(l.leaseId);
    expect((await stats(cc)).host.pinnedBytes).toBe(0);
  }, 60_000);
});
