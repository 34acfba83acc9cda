/**
 * The host tier's memory of what it evicted, so a Lookup miss can say
 * "evicted" rather than "never stored" (kvtier_lookup_miss_chunks_total).
 *
 * Bounded and allocation-free: a direct-mapped table of SLOTS 64-bit
 * fingerprints of ChunkId.hostKey (two Uint32Arrays, 1 MiB in all). An
 * eviction writes its slot; a later eviction landing in the same slot
 * forgets the earlier one, so an old eviction may be reported as
 * not_stored, never the reverse (bar a 64-bit fingerprint clash).
 * Re-inserting a chunk forgets it. Roughly the last SLOTS/2 evictions are
 * remembered exactly.
 */

/** Slots of the table (a power of two). */
export const EVICTED_ID_SLOTS = 1 << 17;

export class EvictedIds {
  readonly #lo = new Uint32Array(EVICTED_ID_SLOTS);
  readonly #hi = new Uint32Array(EVICTED_ID_SLOTS);

  add(hostKey: string): void {
    const lo = fnv(hostKey, 0x811c9dc5);
    const slot = lo & (EVICTED_ID_SLOTS - 1);
    this.#lo[slot] = lo;
    this.#hi[slot] = check(hostKey); // never 0: 0 marks an empty slot
  }

  has(hostKey: string): boolean {
    const lo = fnv(hostKey, 0x811c9dc5);
    const slot = lo & (EVICTED_ID_SLOTS - 1);
    return this.#lo[slot] === lo && this.#hi[slot] === check(hostKey);
  }

  forget(hostKey: string): void {
    const lo = fnv(hostKey, 0x811c9dc5);
    const slot = lo & (EVICTED_ID_SLOTS - 1);
    if (this.#lo[slot] === lo) this.#hi[slot] = 0;
  }
}

/** The second half of the fingerprint, never 0. */
const check = (s: string): number => (fnv(s, 0x01000193) | 1) >>> 0;

/** 32-bit FNV-1a over the string's UTF-16 code units, from `seed`. */
function fnv(s: string, seed: number): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}
