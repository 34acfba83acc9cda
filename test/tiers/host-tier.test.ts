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

/** A chain hash: 64 hex digits; `head` sets the first 8 (the group index key's bytes). */
const chainHex = (head: string, tail: number): string => head + tail.toString(16).padStart(56, '0');
const rankId = (rank: number, hex: string): ChunkId => ChunkId.of(`ns-rank${rank}`, hex);

function fillId(tier: HostTier, chunk: ChunkId, bytes: number, v: number): boolean {
  const slab = tier.reserve(bytes);
  if (slab === null) return false;
  slab.buf.fill(v);
  tier.insert(chunk, slab);
  return true;
}

describe.each([
  ['heap', () => new HeapMemory(4 * MiB)],
  ...(nativeAvailable() ? [['native', () => new NativePool(4 * MiB)] as const] : []),
])('host tier chain-hash groups and group pins (%s)', (_name, memory) => {
  it('every rank\'s entry of a chain hash is found from the raw hash bytes, also when two hashes share the index key', () => {
    const t = new HostTier(memory());
    const a = chainHex('0badc0de', 1);
    const b = chainHex('0badc0de', 2);
    for (const hex of [a, b]) for (let r = 0; r < 2; r++) fillId(t, rankId(r, hex), 1024, r);
    const bytes = Buffer.concat([Buffer.alloc(5), Buffer.from(a, 'hex'), Buffer.from(b, 'hex')]);
    const ga = t.groupAt(bytes, 5)!;
    const gb = t.groupAt(bytes, 5 + 32)!;
    expect(ga.entries.map((e) => e.id.hostKey)).toEqual([`ns-rank0:${a}`, `ns-rank1:${a}`]);
    expect(gb.entries.map((e) => e.id.hostKey)).toEqual([`ns-rank0:${b}`, `ns-rank1:${b}`]);
    for (let r = 0; r < 2; r++) t.remove(rankId(r, a));
    expect(t.groupAt(bytes, 5)).toBeUndefined();
    expect(t.groupAt(bytes, 5 + 32)?.entries.length).toBe(2);
    // Ids that are not chain hashes are indexed by key only.
    expect(fill(t, 'not-hex', 1024, 1)).toBe(true);
    expect(t.has(id('not-hex'))).toBe(true);
  });

  it('a pinned group is never evicted, counts as pinned entries and bytes, and is evictable again when unpinned', () => {
    const t = new HostTier(memory());
    const hex = chainHex('12345678', 7);
    for (let r = 0; r < 2; r++) fillId(t, rankId(r, hex), MiB, r);
    for (let i = 0; i < 2; i++) fill(t, `g${i}`, MiB, 10 + i);
    const g = t.groupAt(Buffer.from(hex, 'hex'), 0)!;
    t.pinGroup(g);
    t.pinGroup(g);
    expect(t.stats()).toMatchObject({ pinnedEntries: 2, pinnedBytes: 2 * MiB });
    // An own pin on top of the group's is not counted twice.
    const own = t.pin(rankId(0, hex))!;
    expect(t.stats().pinnedEntries).toBe(2);
    for (let i = 0; i < 3; i++) fill(t, `more${i}`, MiB, 20 + i);
    for (let r = 0; r < 2; r++) expect(t.peek(rankId(r, hex))!.slab.buf.every((v) => v === r)).toBe(true);
    t.unpinGroup(g);
    expect(t.stats().pinnedEntries).toBe(2);
    t.unpinGroup(g);
    expect(t.stats()).toMatchObject({ pinnedEntries: 1, pinnedBytes: MiB });
    expect(() => t.unpinGroup(g)).toThrow(/unpinned/);
    t.unpin(own);
    expect(t.stats()).toMatchObject({ pinnedEntries: 0, pinnedBytes: 0 });
    for (let i = 0; i < 4; i++) fill(t, `last${i}`, MiB, 30 + i);
    for (let r = 0; r < 2; r++) expect(t.has(rankId(r, hex))).toBe(false);
  });

  it('an entry removed while its group is pinned keeps its bytes until the group pin and its own pin are gone', () => {
    const t = new HostTier(memory());
    const hex = chainHex('cafef00d', 3);
    for (let r = 0; r < 2; r++) fillId(t, rankId(r, hex), MiB, 40 + r);
    const g = t.groupAt(Buffer.from(hex, 'hex'), 0)!;
    t.pinGroup(g);
    const e0 = t.peek(rankId(0, hex))!;
    const e1 = t.peek(rankId(1, hex))!;
    t.pinEntry(e1);
    expect(t.remove(rankId(0, hex))).toBe(true);
    expect(t.remove(rankId(1, hex))).toBe(true);
    expect(t.groupAt(Buffer.from(hex, 'hex'), 0)).toBeUndefined();
    expect(t.stats()).toMatchObject({ usedBytes: 2 * MiB, pinnedEntries: 2 });
    expect(e0.slab.buf.every((v) => v === 40)).toBe(true);
    t.unpinGroup(g);
    // e0 goes with the group pin; e1 still has its own.
    expect(t.stats()).toMatchObject({ usedBytes: MiB, pinnedEntries: 1 });
    expect(e1.slab.buf.every((v) => v === 41)).toBe(true);
    t.unpin(e1);
    expect(t.stats()).toMatchObject({ usedBytes: 0, pinnedEntries: 0, pinnedBytes: 0 });
  });

  it('an entry stored into a pinned group is pinned with it', () => {
    const t = new HostTier(memory());
    const hex = chainHex('abcdef01', 9);
    fillId(t, rankId(0, hex), MiB, 1);
    const g = t.groupAt(Buffer.from(hex, 'hex'), 0)!;
    t.pinGroup(g);
    fillId(t, rankId(1, hex), MiB, 2);
    expect(t.stats().pinnedEntries).toBe(2);
    // Six stores through a 4 MiB pool: each evicts an unpinned entry, never the group's.
    for (let i = 0; i < 6; i++) expect(fill(t, `fill${i}`, MiB, 3)).toBe(true);
    for (let r = 0; r < 2; r++) expect(t.has(rankId(r, hex))).toBe(true);
    expect(t.stats().evictions).toBe(4);
    t.unpinGroup(g);
    expect(t.stats().pinnedEntries).toBe(0);
    for (let i = 0; i < 4; i++) fill(t, `after${i}`, MiB, 5);
    for (let r = 0; r < 2; r++) expect(t.has(rankId(r, hex))).toBe(false);
  });
});
