import { describe, expect, it } from 'vitest';
import { HeapMemory } from '../../src/tiers/host-memory.js';
import { HostTier } from '../../src/tiers/host-tier.js';
import { ChunkId } from '../../src/tiers/chunk-id.js';
import type { Tier } from '../../src/tiers/tier.js';
import { NativePool, nativeAvailable } from '../../native/index.js';
import { runTierContract } from './tier-contract.js';

const MiB = 1 << 20;

/**
 * The contract suite through HostTier's one (synchronous) API: put copies
 * into a fresh slab and replaces the old entry, get copies out.
 */
function asTier(host: HostTier): Tier {
  return {
    name: 'host',
    contains: async (ids) => ids.map((id) => host.has(id)),
    get: async (id) => {
      const entry = host.peek(id);
      return entry === undefined ? null : Buffer.from(entry.slab.buf);
    },
    put: async (id, payload) => {
      host.remove(id);
      const slab = host.reserve(payload.length);
      if (slab === null) return false;
      payload.copy(slab.buf);
      host.insert(id, slab);
      return true;
    },
    delete: async (ids) => ids.reduce((n, id) => n + (host.remove(id) ? 1 : 0), 0),
    close: () => host.close(),
  };
}

runTierContract('host (heap memory)', async () => asTier(new HostTier(new HeapMemory(64 * MiB))));
describe.skipIf(!nativeAvailable())('host tier on the native pool', () => {
  runTierContract('host (native pinned pool)', async () => asTier(new HostTier(new NativePool(64 * MiB))));
});

const ids = new Map<string, ChunkId>();
/** One id per name, as the manager passes one id per chunk. */
function id(name: string): ChunkId {
  let i = ids.get(name);
  if (i === undefined) ids.set(name, (i = ChunkId.of('ns-host', name)));
  return i;
}

function fill(tier: HostTier, key: string, bytes: number, v: number): boolean {
  const slab = tier.reserve(bytes);
  if (slab === null) return false;
  slab.buf.fill(v);
  tier.insert(id(key), slab);
  return true;
}

describe.each([
  ['heap', () => new HeapMemory(4 * MiB)],
  ...(nativeAvailable() ? [['native', () => new NativePool(4 * MiB)] as const] : []),
])('host tier LRU and pins (%s)', (_name, memory) => {
  it('evicts the least recently used unpinned entry first', () => {
    const t = new HostTier(memory());
    for (let i = 0; i < 4; i++) expect(fill(t, `k${i}`, MiB, i)).toBe(true);
    t.pin(id('k0'));
    t.unpin(t.peek(id('k0'))!); // touched: now the most recent
    expect(fill(t, 'k4', MiB, 4)).toBe(true);
    expect(t.has(id('k1'))).toBe(false);
    expect(t.has(id('k0'))).toBe(true);
    expect(t.stats().evictions).toBe(1);
  });

  it('never evicts pinned entries; when all are pinned a store is skipped and counted', () => {
    const t = new HostTier(memory());
    for (let i = 0; i < 4; i++) fill(t, `k${i}`, MiB, i);
    const pinned = [0, 1, 2, 3].map((i) => t.pin(id(`k${i}`))!);
    expect(fill(t, 'k4', MiB, 4)).toBe(false);
    expect(t.stats().skippedFull).toBe(1);
    for (let i = 0; i < 4; i++) expect(t.peek(id(`k${i}`))!.slab.buf.every((b) => b === i)).toBe(true);
    t.unpin(pinned[2]);
    expect(fill(t, 'k4', MiB, 4)).toBe(true);
    expect(t.has(id('k2'))).toBe(false);
    expect(t.stats().pinnedEntries).toBe(3);
  });

  it('a removed pinned entry keeps its bytes until the last unpin', () => {
    const t = new HostTier(memory());
    fill(t, 'a', MiB, 9);
    const e = t.pin(id('a'))!;
    expect(t.remove(id('a'))).toBe(true);
    expect(t.has(id('a'))).toBe(false);
    // The slab is not reusable yet: the pool is still charged for it.
    expect(t.stats().usedBytes).toBe(MiB);
    expect(e.slab.buf.every((b) => b === 9)).toBe(true);
    t.unpin(e);
    expect(t.stats().usedBytes).toBe(0);
    expect(() => t.unpin(e)).toThrow(/unpinned/);
  });
});
