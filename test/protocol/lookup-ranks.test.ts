/**
 * One Lookup for every rank of a TP engine (Hello.lookup_ranks, hash
 * version 2): the scheduler's one request answers the prefix that every
 * rank holds, and each rank's worker retrieves exactly its own shard with
 * its own lease. Real daemons, real sockets, a real valkey-server.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packTokens } from '../../src/chunking/tokens.js';
import type { KvtierClient } from '../../src/protocol/client.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { startValkey, startValkeyCluster, stopAllValkey } from '../../bench/valkey-server.js';

const tokens = (n: number, seed: number): Buffer => packTokens(Array.from({ length: n }, (_, i) => (i * 7919 + seed) % 128_000));
const engine = (model: string, tpSize: number) => ({ model, dtype: 'bfloat16', kvLayout: 'test', tpSize, ppSize: 1 });
const ranks = (n: number) => Array.from({ length: n }, (_, tp) => ({ tpRank: tp, ppRank: 0 }));

/** Each rank stores its own shard of `n` chunks (distinct random bytes per rank and chunk). */
async function storeShards(workers: KvtierClient[], t: Buffer, chunksPerRank: number[]): Promise<Buffer[][]> {
  const shards: Buffer[][] = [];
  for (let r = 0; r < workers.length; r++) {
    const chunks = Array.from({ length: chunksPerRank[r] }, () => randomBytes(4096 + r));
    shards.push(chunks);
    if (chunks.length === 0) continue;
    const s = await workers[r].store({ address: { tokens: t.subarray(0, chunks.length * 256 * 4) }, chunks });
    expect(s.copied.storedChunks).toBe(chunks.length);
    await s.committed;
  }
  return shards;
}

afterAll(async () => {
  await stopAllValkey();
});

describe('one Lookup answers for every rank (host tier)', () => {
  let d: TestDaemon;
  beforeAll(async () => {
    d = await startTestDaemon({});
  });
  afterAll(async () => {
    await d.stop();
  });

  it('TP=2: one Lookup, a lease per rank, each rank retrieves exactly its own shard', async () => {
    const fp = engine('ranks-tp2', 2);
    const workers = [await d.connect({ fingerprint: { ...fp, tpRank: 0 } }), await d.connect({ fingerprint: { ...fp, tpRank: 1 } })];
    const sched = await d.connect({ fingerprint: fp, lookupRanks: ranks(2) });
    expect(sched.hello?.rankNamespaceIds).toEqual(workers.map((w) => w.hello?.namespaceId));
    const t = tokens(3 * 256 + 10, 1);
    const shards = await storeShards(workers, t, [3, 3]);
    const lookups = async (): Promise<number> => ((await sched.stats()) as { counters: { lookups: number } }).counters.lookups;
    const lookupsBefore = await lookups();
    const l = await sched.lookup({ tokens: t });
    expect(await lookups()).toBe(lookupsBefore + 1);
    expect(l.hitChunks).toBe(3);
    expect(l.hitTokens).toBe(768);
    expect(l.hostChunks).toBe(3);
    expect(l.leaseIds.length).toBe(2);
    expect(Number(l.leaseId)).toBe(Number(l.leaseIds[0]));
    for (let r = 0; r < 2; r++) {
      const got = await workers[r].retrieve({ leaseId: l.leaseIds[r] });
      expect(got.loadedChunks).toBe(3);
      got.chunks.forEach((c, i) => expect(Buffer.from(c).equals(shards[r][i])).toBe(true));
      await workers[r].releaseLease(Number(l.leaseIds[r]));
    }
    // A rank's lease is not another rank's: rank 0 cannot use rank 1's.
    const again = await sched.lookup({ tokens: t });
    await expect(workers[0].retrieve({ leaseId: again.leaseIds[1] })).rejects.toMatchObject({ code: 'KVT_LEASE_NOT_FOUND' });
    // The scheduler releases every rank's lease of its Lookup.
    for (const id of again.leaseIds) await sched.releaseLease(Number(id));
  });

  it('a chunk stored by rank 0 only is not a hit: the hit is what every rank can load', async () => {
    const fp = engine('ranks-partial', 2);
    const workers = [await d.connect({ fingerprint: { ...fp, tpRank: 0 } }), await d.connect({ fingerprint: { ...fp, tpRank: 1 } })];
    const sched = await d.connect({ fingerprint: fp, lookupRanks: ranks(2) });
    const t = tokens(4 * 256, 2);
    await storeShards(workers, t, [4, 0]);
    const none = await sched.lookup({ tokens: t });
    expect(none.hitChunks).toBe(0);
    expect(none.leaseIds.length).toBe(0);
    // Rank 1 stores the first two chunks: two positions are held by both.
    await storeShards([workers[1]], t, [2]);
    const two = await sched.lookup({ tokens: t });
    expect(two.hitChunks).toBe(2);
    expect(two.leaseIds.length).toBe(2);
    // Rank 0 alone would have had all four.
    expect((await workers[0].lookup({ tokens: t }, { noLease: true })).hitChunks).toBe(4);
  });

  it('MLA one copy: ranks naming the same namespace get a lease each, checked once', async () => {
    const fp = { ...engine('ranks-mla', 2), mla: true };
    const w0 = await d.connect({ fingerprint: { ...fp, tpRank: 0 } });
    const w1 = await d.connect({ fingerprint: { ...fp, tpRank: 1 } });
    const sched = await d.connect({ fingerprint: fp, lookupRanks: [{ tpRank: 0, ppRank: 0 }, { tpRank: 0, ppRank: 0 }] });
    const t = tokens(2 * 256, 3);
    const [shard] = await storeShards([w0], t, [2]);
    const l = await sched.lookup({ tokens: t });
    expect(l.hitChunks).toBe(2);
    expect(l.leaseIds.length).toBe(2);
    // Rank 1 loads rank 0's copy, in rank 0's namespace: its worker says tp_rank 0 for its chunks.
    const w1InRank0 = await d.connect({ fingerprint: { ...fp, tpRank: 0 } });
    expect((await w0.retrieve({ leaseId: l.leaseIds[0] })).loadedChunks).toBe(2);
    await w0.releaseLease(Number(l.leaseIds[0]));
    const got = await w1InRank0.retrieve({ leaseId: l.leaseIds[1] });
    got.chunks.forEach((c, i) => expect(Buffer.from(c).equals(shard[i])).toBe(true));
    expect((await w1.lookup({ tokens: t }, { noLease: true })).hitChunks).toBe(0);
  });

  it('TP=2: a rank\'s leased chunks invalidated meanwhile still load from its lease; they go when the last lease of the Lookup goes', async () => {
    const fp = engine('ranks-held', 2);
    const workers = [await d.connect({ fingerprint: { ...fp, tpRank: 0 } }), await d.connect({ fingerprint: { ...fp, tpRank: 1 } })];
    const sched = await d.connect({ fingerprint: fp, lookupRanks: ranks(2) });
    const host = async (): Promise<{ entries: number; pinnedEntries: number }> => ((await sched.stats()) as { host: { entries: number; pinnedEntries: number } }).host;
    const before = await host();
    const t = tokens(3 * 256, 5);
    const shards = await storeShards(workers, t, [3, 3]);
    const l = await sched.lookup({ tokens: t });
    expect(l.hitChunks).toBe(3);
    expect((await host()).pinnedEntries).toBe(before.pinnedEntries + 6);
    expect(await workers[0].invalidate({ tokens: t })).toBe(3);
    expect((await sched.lookup({ tokens: t }, { noLease: true })).hitChunks).toBe(0);
    const got = await workers[0].retrieve({ leaseId: l.leaseIds[0] });
    expect(got.loadedChunks).toBe(3);
    got.chunks.forEach((c, i) => expect(Buffer.from(c).equals(shards[0][i])).toBe(true));
    await workers[0].releaseLease(Number(l.leaseIds[0]));
    // Rank 0's lease is gone; rank 1's still holds the Lookup's pins (the ranks load together).
    await expect(workers[0].retrieve({ leaseId: l.leaseIds[0] })).rejects.toMatchObject({ code: 'KVT_LEASE_NOT_FOUND' });
    expect((await workers[1].retrieve({ leaseId: l.leaseIds[1] })).loadedChunks).toBe(3);
    await workers[1].releaseLease(Number(l.leaseIds[1]));
    expect(await host()).toMatchObject({ entries: before.entries + 3, pinnedEntries: before.pinnedEntries });
  });

  it('lookup_ranks outside tp_size x pp_size are a bad request', async () => {
    await expect(d.connect({ fingerprint: engine('ranks-bad', 2), lookupRanks: [{ tpRank: 2, ppRank: 0 }] })).rejects.toMatchObject({ code: 'KVT_BAD_REQUEST' });
    await expect(d.connect({ fingerprint: engine('ranks-bad', 2), lookupRanks: ranks(3).map((r) => ({ ...r, tpRank: 0 })) })).rejects.toMatchObject({ code: 'KVT_BAD_REQUEST' });
  });
});

for (const mode of ['single', 'cluster'] as const) {
  describe(`one Lookup answers for every rank from Valkey (${mode})`, () => {
    let a: TestDaemon;
    let b: TestDaemon;
    beforeAll(async () => {
      const v = mode === 'single' ? await startValkey({ maxmemory: '256mb' }) : await startValkeyCluster();
      const url = v.url;
      a = await startTestDaemon({ remote_url: url });
      b = await startTestDaemon({ remote_url: url });
    }, 120_000);
    afterAll(async () => {
      await a?.stop();
      await b?.stop();
    });

    it('TP=4 stored through daemon A: daemon B finds every rank in one Lookup and each rank gets its shard', async () => {
      const fp = engine(`ranks-valkey-${mode}`, 4);
      const t = tokens(3 * 256, 4);
      const writers = await Promise.all(ranks(4).map((r) => a.connect({ fingerprint: { ...fp, ...r } })));
      const shards = await storeShards(writers, t, [3, 3, 3, 2]);
      const sched = await b.connect({ fingerprint: fp, lookupRanks: ranks(4) });
      const l = await sched.lookup({ tokens: t });
      expect(l.hitChunks).toBe(2);
      expect(l.valkeyChunks).toBe(2);
      expect(l.leaseIds.length).toBe(4);
      for (let r = 0; r < 4; r++) {
        const w = await b.connect({ fingerprint: { ...fp, tpRank: r } });
        const got = await w.retrieve({ leaseId: l.leaseIds[r] });
        expect(got.loadedChunks).toBe(2);
        got.chunks.forEach((c, i) => expect(Buffer.from(c).equals(shards[r][i])).toBe(true));
      }
    });
  });
}
