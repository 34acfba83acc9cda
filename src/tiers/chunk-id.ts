/**
 * A chunk's identity, computed once per chunk and passed to every tier.
 *
 *   hashes (n*32 bytes, one Buffer per request) ──► ChunkId i
 *     namespaceId   "3f2a…"            (16-byte namespace id, hex)
 *     hash          "9c01…"            (hex of the 32-byte prefix hash)
 *     bytes         the 32 raw hash bytes, decoded from `hash` on first use
 *     hostKey       "<namespaceId>:<hash>"            host tier index key
 *     valkeyKey(p)  "<p>:{<namespaceId>:<hash>}"      memoised per prefix
 *
 * The manager builds one per chunk of a request (ChunkId.at) and every hop
 * after it (leases, fetches, write-behind, host, Valkey, a disk tier) reads
 * these fields instead of re-deriving strings. Ids made from strings
 * (ChunkId.of: tests, tools) are validated once here, so the tiers never
 * re-check a key; ids made from hash bytes are hex by construction.
 * An id keeps no reference to the request's hash buffer: host entries hold
 * their ids for as long as they live, and one surviving entry must not pin
 * a whole request's hashes (or a shared allocUnsafe pool slab).
 */
import { HASH_BYTES } from '../chunking/prefix-hash.js';
import { BadRequestError } from '../errors.js';

const SAFE_PART = /^[A-Za-z0-9_.-]{1,128}$/;

export class ChunkId {
  readonly namespaceId: string;
  readonly hash: string;
  readonly hostKey: string;
  #bytes: Buffer | null = null;
  #valkeyPrefix: string | null = null;
  #valkeyKey = '';

  private constructor(namespaceId: string, hash: string) {
    this.namespaceId = namespaceId;
    this.hash = hash;
    this.hostKey = `${namespaceId}:${hash}`;
  }

  /**
   * Chunk `index` of a request's hash buffer. Trusts `namespaceId` (a
   * Namespace's id is hex).
   */
  static at(namespaceId: string, hashes: Buffer, index: number): ChunkId {
    const start = index * HASH_BYTES;
    return new ChunkId(namespaceId, hashes.toString('hex', start, start + HASH_BYTES));
  }

  /**
   * The same chunk position in another rank's namespace: every rank shares
   * the chain (hash version 2), so its hex is printed once for all of them.
   */
  inNamespace(namespaceId: string): ChunkId {
    return namespaceId === this.namespaceId ? this : new ChunkId(namespaceId, this.hash);
  }

  /** An id from its printed parts; BadRequestError unless both are 1-128 of [A-Za-z0-9_.-]. */
  static of(namespaceId: string, hash: string): ChunkId {
    if (!SAFE_PART.test(namespaceId)) throw new BadRequestError(`namespace id "${namespaceId}" must be 1-128 of [A-Za-z0-9_.-]`);
    if (!SAFE_PART.test(hash)) throw new BadRequestError(`chunk hash "${hash}" must be 1-128 of [A-Za-z0-9_.-]`);
    return new ChunkId(namespaceId, hash);
  }

  /** The raw hash bytes (for a disk tier's file names or index), decoded once on first use. */
  get bytes(): Buffer {
    if (this.#bytes === null) this.#bytes = Buffer.from(this.hash, 'hex');
    return this.#bytes;
  }

  /**
   * The Valkey key under `prefix`. Memoised: a chunk that is looked up,
   * fetched and written behind builds its key once.
   */
  valkeyKey(prefix: string): string {
    if (this.#valkeyPrefix !== prefix) {
      this.#valkeyKey = `${prefix}:{${this.hostKey}}`;
      this.#valkeyPrefix = prefix;
    }
    return this.#valkeyKey;
  }
}

/** Ids of the first `count` chunks of a request's hash buffer. */
export function chunkIds(namespaceId: string, hashes: Buffer, count: number): ChunkId[] {
  const ids = new Array<ChunkId>(count);
  for (let i = 0; i < count; i++) ids[i] = ChunkId.at(namespaceId, hashes, i);
  return ids;
}
