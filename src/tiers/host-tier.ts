/**
 * Host tier: chunk payloads in host memory (the pinned native pool, or heap
 * buffers), an LRU index, and pin counts.
 *
 * Invariants:
 * - a pinned entry (pins > 0, or its chain-hash group pinned) is never
 *   evicted and its slab never reused; remove() of a pinned entry only
 *   marks it doomed, the slab goes back to the pool when the last pin (its
 *   own or its group's) is dropped;
 * - when every entry is pinned and the pool is full, reserve() returns null:
 *   the caller skips the store and counts it, memory is never overcommitted;
 *   while the pool still warms that count is skippedWarming, not skippedFull.
 * Eviction is LRU by second chance: the Map's insertion order is the age
 * order (oldest first), a pin only marks its entry used, and the eviction
 * scan moves a used entry to the young end (delete + set) instead of
 * evicting it. Re-inserting each entry at its pin was a quarter of a TP=8
 * Lookup's time. A Lookup pins a position's group once (pinGroup), whatever
 * its rank count: pinning each rank's entry was most of what a TP=8 Lookup
 * cost beyond a TP=1 one. The index is keyed by ChunkId.hostKey; this is the
 * tier's only API (synchronous, for the manager's hot path), not the async
 * Tier contract of the shared tiers. A second index by chain hash
 * (host-groups.ts) holds every rank's entry of a chunk position (hash
 * version 2: ranks share the hash) and is read from the request's raw hash
 * bytes, so a Lookup for N ranks makes one probe per position and no string.
 */
import type { ChunkId } from './chunk-id.js';
import { EvictedIds } from './evicted-ids.js';
import { HostGroups, type HostGroup } from './host-groups.js';
import type { HostMemory, Slab } from './host-memory.js';

export interface HostEntry {
  readonly id: ChunkId;
  readonly slab: Slab;
  /** Pins of its own (a Retrieve's copy, a fetch landing, `kvtier pin`); its group's are counted there. */
  pins: number;
  doomed: boolean;
  /** Its chain hash's group (host-groups.ts), kept after removal; null for an id that is no chain hash. */
  group: HostGroup | null;
  /** Removed while its group was pinned: in group.held. */
  held: boolean;
  /** Unix ms the entry was inserted (kvtier inspect). */
  readonly storedAt: number;
  /** Pinned since the eviction scan last passed it: it gets a second chance. */
  used: boolean;
}

export interface HostTierStats {
  entries: number;
  usedBytes: number;
  capacityBytes: number;
  pinnedEntries: number;
  pinnedBytes: number;
  evictions: number;
  evictedBytes: number;
  skippedFull: number;
  /** Reservations refused while the pool was still warming and its ready part was full. */
  skippedWarming: number;
}

export class HostTier {
  readonly name = 'host' as const;
  readonly memory: HostMemory;
  #index = new Map<string, HostEntry>();
  /** Entries by chain hash: one per namespace holding it (a few, one per rank). */
  readonly #groups = new HostGroups();
  #usedBytes = 0;
  #pinnedEntries = 0;
  #pinnedBytes = 0;
  #evictions = 0;
  #evictedBytes = 0;
  #skippedFull = 0;
  #skippedWarming = 0;
  readonly #evicted = new EvictedIds();

  constructor(memory: HostMemory) {
    this.memory = memory;
  }

  /** The entry without touching the LRU order. */
  peek(id: ChunkId): HostEntry | undefined {
    return this.#index.get(id.hostKey);
  }

  has(id: ChunkId): boolean {
    return this.#index.has(id.hostKey);
  }

  /** Every namespace's entry of the chain hash at `hashes[offset..offset+32]` (a Lookup reads it once per position; entryIn picks a rank's). */
  groupAt(hashes: Uint8Array, offset: number): HostGroup | undefined {
    return this.#groups.find(hashes, offset);
  }

  /** Whether this tier evicted the chunk recently (bounded memory: evicted-ids.ts). */
  wasEvicted(id: ChunkId): boolean {
    return this.#evicted.has(id.hostKey);
  }

  /** Every entry, oldest first (admin listing; not for the hot path). */
  entries(): IterableIterator<HostEntry> {
    return this.#index.values();
  }

  /** Pins and touches an entry; undefined when absent. */
  pin(id: ChunkId): HostEntry | undefined {
    const entry = this.#index.get(id.hostKey);
    if (entry === undefined) return undefined;
    this.pinFound(entry);
    return entry;
  }

  /** Pins and touches an entry found by peek or groupAt (still indexed). */
  pinFound(entry: HostEntry): void {
    entry.used = true;
    this.pinEntry(entry);
  }

  pinEntry(entry: HostEntry): void {
    if (entry.pins++ !== 0) return;
    const g = entry.group;
    const bytes = entry.slab.buf.length;
    if (g !== null && !entry.doomed) {
      g.freeCount--;
      g.freeBytes -= bytes;
    }
    if (g === null || g.pins === 0) {
      this.#pinnedEntries++;
      this.#pinnedBytes += bytes;
    }
  }

  unpin(entry: HostEntry): void {
    if (entry.pins <= 0) throw new Error(`unpin of an unpinned host entry ${entry.id.hostKey}`);
    if (--entry.pins !== 0) return;
    const g = entry.group;
    const bytes = entry.slab.buf.length;
    if (g !== null && !entry.doomed) {
      g.freeCount++;
      g.freeBytes += bytes;
    }
    if (g !== null && g.pins > 0) {
      // Still held by its group's pin: freed, if doomed, when that goes.
      if (entry.doomed) this.#hold(g, entry);
      return;
    }
    this.#pinnedEntries--;
    this.#pinnedBytes -= bytes;
    if (entry.doomed) this.#free(entry);
  }

  /**
   * Pins every entry of a chain-hash group (one counter, whatever the rank
   * count): none is evicted or freed until unpinGroup. Entries added
   * meanwhile are held too.
   */
  pinGroup(g: HostGroup): void {
    if (g.pins++ !== 0) return;
    this.#pinnedEntries += g.freeCount;
    this.#pinnedBytes += g.freeBytes;
    for (const e of g.entries) e.used = true;
  }

  unpinGroup(g: HostGroup): void {
    if (g.pins <= 0) throw new Error('unpin of an unpinned host group');
    if (--g.pins !== 0) return;
    this.#pinnedEntries -= g.freeCount;
    this.#pinnedBytes -= g.freeBytes;
    const held = g.held;
    if (held === null) return;
    g.held = null;
    for (const e of held) {
      e.held = false;
      if (e.pins > 0) continue; // its own last unpin frees it
      this.#pinnedEntries--;
      this.#pinnedBytes -= e.slab.buf.length;
      this.#free(e);
    }
  }

  #hold(g: HostGroup, entry: HostEntry): void {
    if (entry.held) return;
    entry.held = true;
    (g.held ??= []).push(entry);
  }

  /** A slab of `bytes`, evicting unpinned entries oldest first; null when all are pinned. */
  reserve(bytes: number): Slab | null {
    // An empty value needs no pool memory (and a pool has no 0-byte slabs).
    if (bytes === 0) return { buf: Buffer.alloc(0), release: () => {} };
    for (;;) {
      const slab = this.memory.allocate(bytes);
      if (slab !== null) return slab;
      if (!this.#evictOne()) {
        if (this.memory.info().warm) this.#skippedFull++;
        else this.#skippedWarming++;
        return null;
      }
    }
  }

  /** Adds a filled slab. If the key is already present the new slab is released. */
  insert(id: ChunkId, slab: Slab): HostEntry {
    const existing = this.#index.get(id.hostKey);
    if (existing !== undefined) {
      slab.release();
      return existing;
    }
    const entry: HostEntry = { id, slab, pins: 0, doomed: false, storedAt: Date.now(), used: false, group: null, held: false };
    this.#index.set(id.hostKey, entry);
    const g = this.#groups.add(entry);
    if (g !== null) {
      entry.group = g;
      g.freeCount++;
      g.freeBytes += slab.buf.length;
      if (g.pins > 0) {
        this.#pinnedEntries++;
        this.#pinnedBytes += slab.buf.length;
      }
    }
    this.#evicted.forget(id.hostKey);
    this.#usedBytes += slab.buf.length;
    return entry;
  }

  /** Removes an entry; a pinned one is freed when its last pin goes. */
  remove(id: ChunkId): boolean {
    return this.#removeKey(id.hostKey);
  }

  /** Removes every entry of a namespace. */
  removeNamespace(namespaceId: string): number {
    let removed = 0;
    for (const entry of [...this.#index.values()]) {
      if (entry.id.namespaceId === namespaceId && this.#removeKey(entry.id.hostKey)) removed++;
    }
    return removed;
  }

  stats(): HostTierStats {
    return {
      entries: this.#index.size,
      usedBytes: this.#usedBytes,
      capacityBytes: this.memory.capacityBytes,
      pinnedEntries: this.#pinnedEntries,
      pinnedBytes: this.#pinnedBytes,
      evictions: this.#evictions,
      evictedBytes: this.#evictedBytes,
      skippedFull: this.#skippedFull,
      skippedWarming: this.#skippedWarming,
    };
  }

  async close(): Promise<void> {
    for (const key of [...this.#index.keys()]) this.#removeKey(key);
  }

  #removeKey(key: string): boolean {
    const entry = this.#index.get(key);
    if (entry === undefined) return false;
    this.#index.delete(key);
    this.#groups.remove(entry);
    entry.doomed = true;
    const g = entry.group;
    if (g !== null && entry.pins === 0) {
      g.freeCount--;
      g.freeBytes -= entry.slab.buf.length;
    }
    if (g !== null && g.pins > 0) {
      // A lease of the pinned group still reads it (leases.ts leasedEntry).
      this.#hold(g, entry);
      return true;
    }
    if (entry.pins === 0) this.#free(entry);
    return true;
  }

  #evictOne(): boolean {
    for (const [key, entry] of this.#index) {
      if (entry.pins > 0 || (entry.group !== null && entry.group.pins > 0)) continue;
      if (entry.used) {
        // Re-inserted under the entry's own (old) key string: a young string
        // stored in the long-lived index is promoted by every scavenge. A Map
        // iteration visits it again at the end, unused then.
        entry.used = false;
        this.#index.delete(key);
        this.#index.set(key, entry);
        continue;
      }
      this.#index.delete(key);
      this.#groups.remove(entry);
      if (entry.group !== null) {
        entry.group.freeCount--;
        entry.group.freeBytes -= entry.slab.buf.length;
      }
      this.#evictions++;
      this.#evictedBytes += entry.slab.buf.length;
      this.#evicted.add(key);
      entry.doomed = true;
      this.#free(entry);
      return true;
    }
    return false;
  }

  #free(entry: HostEntry): void {
    this.#usedBytes -= entry.slab.buf.length;
    entry.slab.release();
  }
}
