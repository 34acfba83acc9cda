/**
 * Host tier: chunk payloads in host memory (the pinned native pool, or heap
 * buffers), an LRU index, and pin counts.
 *
 * Invariants:
 * - a pinned entry (pins > 0) is never evicted and its slab never reused;
 *   remove() of a pinned entry only marks it doomed, the slab goes back to
 *   the pool when the last pin is dropped;
 * - when every entry is pinned and the pool is full, reserve() returns null:
 *   the caller skips the store and counts it, memory is never overcommitted;
 *   while the pool still warms that count is skippedWarming, not skippedFull.
 * The Map's insertion order is the LRU order (oldest first): a touch is a
 * delete + set, O(1).
 */
import type { HostMemory, Slab } from './host-memory.js';
import { chunkKeyString, type ChunkKey, type Tier } from './tier.js';

export interface HostEntry {
  readonly key: string;
  readonly slab: Slab;
  pins: number;
  doomed: boolean;
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

export class HostTier implements Tier {
  readonly name = 'host' as const;
  readonly memory: HostMemory;
  #index = new Map<string, HostEntry>();
  #usedBytes = 0;
  #pinnedEntries = 0;
  #pinnedBytes = 0;
  #evictions = 0;
  #evictedBytes = 0;
  #skippedFull = 0;
  #skippedWarming = 0;

  constructor(memory: HostMemory) {
    this.memory = memory;
  }

  /** The entry without touching the LRU order. */
  peek(key: string): HostEntry | undefined {
    return this.#index.get(key);
  }

  has(key: string): boolean {
    return this.#index.has(key);
  }

  /** Pins and touches an entry; undefined when absent. */
  pin(key: string): HostEntry | undefined {
    const entry = this.#index.get(key);
    if (entry === undefined) return undefined;
    // Re-insert under the entry's own (old) key string, not the caller's fresh
    // one: a young string stored in the long-lived index is promoted by every
    // scavenge, and a lookup of 512 chunks made each scavenge take 15-20 ms.
    this.#index.delete(entry.key);
    this.#index.set(entry.key, entry);
    this.pinEntry(entry);
    return entry;
  }

  pinEntry(entry: HostEntry): void {
    if (entry.pins++ === 0) {
      this.#pinnedEntries++;
      this.#pinnedBytes += entry.slab.buf.length;
    }
  }

  unpin(entry: HostEntry): void {
    if (entry.pins <= 0) throw new Error(`unpin of an unpinned host entry ${entry.key}`);
    if (--entry.pins === 0) {
      this.#pinnedEntries--;
      this.#pinnedBytes -= entry.slab.buf.length;
      if (entry.doomed) this.#free(entry);
    }
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
  insert(key: string, slab: Slab): HostEntry {
    const existing = this.#index.get(key);
    if (existing !== undefined) {
      slab.release();
      return existing;
    }
    const entry: HostEntry = { key, slab, pins: 0, doomed: false };
    this.#index.set(key, entry);
    this.#usedBytes += slab.buf.length;
    return entry;
  }

  /** Removes an entry; a pinned one is freed when its last pin goes. */
  remove(key: string): boolean {
    const entry = this.#index.get(key);
    if (entry === undefined) return false;
    this.#index.delete(key);
    entry.doomed = true;
    if (entry.pins === 0) this.#free(entry);
    return true;
  }

  /** Removes every entry whose key starts with `prefix` (a namespace id + ':'). */
  removePrefix(prefix: string): number {
    let removed = 0;
    for (const key of [...this.#index.keys()]) {
      if (key.startsWith(prefix) && this.remove(key)) removed++;
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

  async contains(keys: readonly ChunkKey[]): Promise<boolean[]> {
    return keys.map((k) => this.#index.has(chunkKeyString(k)));
  }

  /** A copy: the slab may be reused as soon as the entry is evicted. */
  async get(key: ChunkKey): Promise<Buffer | null> {
    const entry = this.#index.get(chunkKeyString(key));
    return entry === undefined ? null : Buffer.from(entry.slab.buf);
  }

  /** Replaces an existing value (a pinned old value lives on until its last unpin). */
  async put(key: ChunkKey, payload: Buffer): Promise<boolean> {
    const k = chunkKeyString(key);
    this.remove(k);
    const slab = this.reserve(payload.length);
    if (slab === null) return false;
    payload.copy(slab.buf);
    this.insert(k, slab);
    return true;
  }

  async delete(keys: readonly ChunkKey[]): Promise<number> {
    let n = 0;
    for (const k of keys) if (this.remove(chunkKeyString(k))) n++;
    return n;
  }

  async close(): Promise<void> {
    for (const key of [...this.#index.keys()]) this.remove(key);
  }

  #evictOne(): boolean {
    for (const [key, entry] of this.#index) {
      if (entry.pins > 0) continue;
      this.#index.delete(key);
      this.#evictions++;
      this.#evictedBytes += entry.slab.buf.length;
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
