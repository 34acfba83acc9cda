/**
 * The host tier's index by chain hash: every namespace's entry of one chain
 * hash (hash version 2: the ranks of an engine share it) in one group, found
 * from the raw bytes of a request's hash buffer, never from a printed key.
 *
 *   hashes[off..off+32] ─► int32 of bytes 0-3, >> 2 (a Smi: no heap number)
 *                       ─► Map<number, HostGroup> ─► .next (same key, other hash)
 *                       ─► the 8 words compared
 *
 * Why bytes and not hex: a warm 128K-token Lookup asks 512 positions. Keyed by
 * hex, each position printed a fresh 64-character string and the Map hashed
 * it, a fifth of the Lookup's time and most of its garbage. The chain hash is
 * SHA-256, so its first 30 bits spread the keys; a clash costs one list step.
 * Ids whose hash is not 32 bytes of hex (ChunkId.of: tools, tests) are not
 * grouped: nothing looks them up by chain hash.
 */
import { HASH_BYTES } from '../chunking/prefix-hash.js';
import type { HostEntry } from './host-tier.js';

export interface HostGroup {
  /** The chain hash as 8 little-endian int32 words. */
  readonly words: Int32Array;
  /** One entry per namespace holding this chain hash (a few: one per rank). */
  readonly entries: HostEntry[];
  /**
   * entries[k].id.namespaceId, beside them: a Lookup matches its ranks here
   * without loading each entry and its id (two cache misses per rank and
   * position on a large tier).
   */
  readonly names: string[];
  /** The next group whose hash has the same Map key. */
  next: HostGroup | null;
  /** Group pins (host-tier.ts pinGroup): while > 0 no entry of the group is evicted or freed. */
  pins: number;
  /** Of `entries`, those with no pin of their own, and their bytes: what a group pin adds to the pinned stats. */
  freeCount: number;
  freeBytes: number;
  /** Entries removed while the group was pinned: freed when its last pin goes. */
  held: HostEntry[] | null;
}

const WORDS = HASH_BYTES / 4;

function keyOf(bytes: Uint8Array, offset: number): number {
  // Bytes 0-3 as int32, two low bits dropped: fits a Smi on every V8 build.
  return (bytes[offset] | (bytes[offset + 1] << 8) | (bytes[offset + 2] << 16) | (bytes[offset + 3] << 24)) >> 2;
}

function same(words: Int32Array, bytes: Uint8Array, offset: number): boolean {
  for (let w = 0; w < WORDS; w++) {
    const o = offset + w * 4;
    if (words[w] !== (bytes[o] | (bytes[o + 1] << 8) | (bytes[o + 2] << 16) | (bytes[o + 3] << 24))) return false;
  }
  return true;
}

export class HostGroups {
  readonly #heads = new Map<number, HostGroup>();

  /** The group of the chain hash at `hashes[offset..offset+32]`. */
  find(hashes: Uint8Array, offset: number): HostGroup | undefined {
    for (let g = this.#heads.get(keyOf(hashes, offset)) ?? null; g !== null; g = g.next) {
      if (same(g.words, hashes, offset)) return g;
    }
    return undefined;
  }

  /** Adds `entry` to its chain hash's group (made if new) and returns the group; null for an id that is not a chain hash. */
  add(entry: HostEntry): HostGroup | null {
    const bytes = entry.id.bytes;
    if (bytes.length !== HASH_BYTES) return null;
    const found = this.find(bytes, 0);
    if (found !== undefined) {
      found.entries.push(entry);
      found.names.push(entry.id.namespaceId);
      return found;
    }
    const words = new Int32Array(WORDS);
    for (let w = 0; w < WORDS; w++) words[w] = bytes.readInt32LE(w * 4);
    const key = keyOf(bytes, 0);
    const group: HostGroup = { words, entries: [entry], names: [entry.id.namespaceId], next: this.#heads.get(key) ?? null, pins: 0, freeCount: 0, freeBytes: 0, held: null };
    this.#heads.set(key, group);
    return group;
  }

  remove(entry: HostEntry): void {
    const bytes = entry.id.bytes;
    if (bytes.length !== HASH_BYTES) return;
    const key = keyOf(bytes, 0);
    let prev: HostGroup | null = null;
    for (let g = this.#heads.get(key) ?? null; g !== null; prev = g, g = g.next) {
      if (!same(g.words, bytes, 0)) continue;
      const k = g.entries.indexOf(entry);
      if (k >= 0) {
        g.entries.splice(k, 1);
        g.names.splice(k, 1);
      }
      if (g.entries.length > 0) return;
      if (prev !== null) prev.next = g.next;
      else if (g.next !== null) this.#heads.set(key, g.next);
      else this.#heads.delete(key);
      return;
    }
  }
}

/** The entry of namespace `namespaceId` in `group`; `hint`: the index to try first (a rank's usual place). */
export function entryIn(group: HostGroup | undefined, namespaceId: string, hint: number): HostEntry | undefined {
  if (group === undefined) return undefined;
  const names = group.names;
  if (names[hint] === namespaceId) return group.entries[hint];
  for (let k = 0; k < names.length; k++) if (names[k] === namespaceId) return group.entries[k];
  return undefined;
}

/** Namespace `namespaceId`'s entry of a pinned group: indexed, or removed while the pin held it; null when neither. */
export function groupEntry(group: HostGroup, namespaceId: string, hint: number): HostEntry | null {
  const e = entryIn(group, namespaceId, hint);
  if (e !== undefined) return e;
  const held = group.held;
  if (held !== null) for (const h of held) if (h.id.namespaceId === namespaceId) return h;
  return null;
}
