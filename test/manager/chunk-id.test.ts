/**
 * The chunk identity is computed once per chunk, and only where it is
 * needed: a warm Lookup of 512 chunks builds no ChunkId (the host tier is
 * read from the raw hash bytes) and probes the chain-hash index once per
 * position for all its ranks; a Lookup that misses prints the id of the
 * chunk it must name; the ids a Store builds are the ones the host tier and
 * the write-behind keep.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { makeNamespace, rankNamespace } from '../../src/chunking/namespace.js';
import { hashHex, hashTokenChunks } from '../../src/chunking/prefix-hash.js';
import { packTokens } from '../../src/chunking/tokens.js';
import { silentLogger } from '../../src/log.js';
import { ChunkManager } from '../../src/manager/chunk-manager.js';
import { ChunkId } from '../../src/tiers/chunk-id.js';
import { HeapMemory } from '../../src/tiers/host-memory.js';
import { HostTier } from '../../src/tiers/host-tier.js';
import type { RemoteTier } from '../../src/tiers/tier.js';

const ns = makeNamespace({ model: 'm', dtype: 'bfloat16', kvLayout: 'vllm', chunkSize: 16, blockSize: 16, tpRank: 0, tpSize: 1, ppRank: 0, ppSize: 1, mla: false, cacheSalt: '' });

function manager(remote: RemoteTier | null = null): ChunkManager {
  return new ChunkManager({
    chunkSize: 16, saveUnfullChunk: false, leaseTtlMs: 10_000, localCpu: true,
    host: new HostTier(new HeapMemory(64 << 20)), remote,
    writeBehindQueueBytes: 64 << 20, writeBehindConcurrency: 2, logger: silentLogger,
  });
}

afterEach(() => vi.restoreAllMocks());

describe('ChunkId: one per chunk', () => {
  it('a warm lookup of 512 chunks builds no id and probes the host index once per chunk', async () => {
    const m = manager();
    const tokens = packTokens(Array.from({ length: 512 * 16 }, (_, i) => i));
    const chunks = Array.from({ length: 512 }, () => Buffer.alloc(8, 1));
    await m.store(ns, { tokens }, { kind: 'inline', chunks }, 0);
    const at = vi.spyOn(ChunkId, 'at');
    const asked = vi.spyOn(m.host, 'groupAt');
    const r = await m.lookup(ns, { tokens }, { owner: 1 });
    expect(r.hitChunks).toBe(512);
    expect(at).toHaveBeenCalledTimes(0);
    expect(asked).toHaveBeenCalledTimes(512);
    // Half the prompt gone from the host tier: the first missing chunk is named (its miss reason), no other.
    for (let i = 256; i < 512; i++) m.host.remove(ChunkId.at(ns.id, hashTokenChunks(ns.root, tokens, 16, false).hashes, i));
    at.mockClear();
    const half = await m.lookup(ns, { tokens }, { owner: 1 });
    expect(half.hitChunks).toBe(256);
    expect(at).toHaveBeenCalledTimes(1);
    expect(m.counters.misses.not_stored).toBe(1);
    await m.close();
  });

  it('a lookup for 8 ranks hashes once, builds no id, and probes the host index once per position for all ranks', async () => {
    const m = manager();
    const tokens = packTokens(Array.from({ length: 512 * 16 }, (_, i) => i));
    const chunks = Array.from({ length: 512 }, () => Buffer.alloc(8, 1));
    const engine = makeNamespace({ ...ns.fingerprint, tpSize: 8 });
    const ranks = Array.from({ length: 8 }, (_, r) => rankNamespace(engine, r, 0));
    for (const rank of ranks) await m.store(rank, { tokens }, { kind: 'inline', chunks }, 0);
    const at = vi.spyOn(ChunkId, 'at');
    const asked = vi.spyOn(m.host, 'groupAt');
    const r = await m.lookup(ranks, { tokens }, { owner: 1 });
    expect(r.hitChunks).toBe(512);
    expect(r.leaseIds.length).toBe(8);
    expect(at).toHaveBeenCalledTimes(0);
    expect(asked).toHaveBeenCalledTimes(512);
    // Every rank's chunk is pinned by its own lease: 8 x 512 entries.
    expect(m.host.stats().pinnedEntries).toBe(8 * 512);
    await m.close();
  });

  it('ids carry the namespace, the hash bytes and hex, the host key and the Valkey key', async () => {
    const puts: ChunkId[] = [];
    const remote: RemoteTier = {
      name: 'valkey', available: true,
      contains: async (ids) => ids.map(() => false), get: async () => null,
      put: async (id) => (puts.push(id), true), delete: async () => 0, close: async () => {},
    };
    const m = manager(remote);
    const tokens = packTokens(Array.from({ length: 32 }, (_, i) => i));
    const r = await m.store(ns, { tokens }, { kind: 'inline', chunks: [Buffer.from('a'), Buffer.from('b')] }, 0);
    await r.committed;
    const { hashes } = hashTokenChunks(ns.root, tokens, 16, false);
    expect(puts.map((id) => id.hash)).toEqual([hashHex(hashes, 0), hashHex(hashes, 1)]);
    for (const [i, id] of puts.entries()) {
      expect(id.namespaceId).toBe(ns.id);
      expect(id.bytes.equals(hashes.subarray(i * 32, (i + 1) * 32))).toBe(true);
      expect(id.hostKey).toBe(`${ns.id}:${id.hash}`);
      expect(id.valkeyKey('kvtier')).toBe(`kvtier:{${ns.id}:${id.hash}}`);
      // The write-behind got the very id the host tier indexed.
      expect(m.host.peek(id)?.id).toBe(id);
    }
    await m.close();
  });
});
