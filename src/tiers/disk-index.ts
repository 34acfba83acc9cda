/**
 * The disk tier's in-memory index: which chunk files exist, their payload
 * length and the bytes they take on disk, in LRU order.
 *
 * The Map's insertion order is the LRU order (oldest first), as in the host
 * tier: a touch is delete + set. usedBytes counts whole files (header block
 * and padding), which is what max_local_disk_size bounds. The index is only
 * ever changed on the JS thread; a file is added once its rename has landed.
 */

export interface DiskEntry {
  /** `${namespaceId}:${hash}`, the host tier's key form. */
  readonly key: string;
  readonly path: string;
  readonly length: number;
  readonly fileBytes: number;
}

export class DiskIndex {
  #map = new Map<string, DiskEntry>();
  #usedBytes = 0;

  get size(): number {
    return this.#map.size;
  }

  get usedBytes(): number {
    return this.#usedBytes;
  }

  has(key: string): boolean {
    return this.#map.has(key);
  }

  get(key: string): DiskEntry | undefined {
    return this.#map.get(key);
  }

  /** Marks an entry most recently used. */
  touch(entry: DiskEntry): void {
    if (this.#map.get(entry.key) !== entry) return;
    this.#map.delete(entry.key);
    this.#map.set(entry.key, entry);
  }

  /** Adds (as most recently used), replacing an entry of the same key; the replaced one. */
  add(entry: DiskEntry): DiskEntry | undefined {
    const old = this.remove(entry.key);
    this.#map.set(entry.key, entry);
    this.#usedBytes += entry.fileBytes;
    return old;
  }

  remove(key: string): DiskEntry | undefined {
    const entry = this.#map.get(key);
    if (entry === undefined) return undefined;
    this.#map.delete(key);
    this.#usedBytes -= entry.fileBytes;
    return entry;
  }

  /** Removes `entry` only if it is still the indexed one for its key. */
  removeEntry(entry: DiskEntry): boolean {
    if (this.#map.get(entry.key) !== entry) return false;
    this.remove(entry.key);
    return true;
  }

  /** Removes and returns the least recently used entry. */
  popOldest(): DiskEntry | undefined {
    for (const entry of this.#map.values()) {
      this.remove(entry.key);
      return entry;
    }
    return undefined;
  }

  entries(): IterableIterator<DiskEntry> {
    return this.#map.values();
  }
}
