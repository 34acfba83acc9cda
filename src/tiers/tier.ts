/**
 * The contracts of the shared tiers (local disk, Valkey).
 *
 * A tier stores opaque chunk payloads under a ChunkId (chunk-id.ts). `get`
 * returns only bytes the tier has verified (for Valkey: header, namespace,
 * length and checksum); anything else is a miss (null), never an error for
 * the caller to interpret. test/tiers/tier-contract.ts runs one suite
 * against every tier; the host tier keeps its own synchronous API
 * (host-tier.ts) and meets the suite through a thin adapter there.
 */
import type { ChunkId } from './chunk-id.js';
import type { Slab } from './host-memory.js';

export type { ChunkId } from './chunk-id.js';

export type TierName = 'host' | 'disk' | 'valkey';

export interface Tier {
  readonly name: TierName;
  /** One answer per key, in order. */
  contains(keys: readonly ChunkId[]): Promise<boolean[]>;
  /** Verified payload, or null for a miss. */
  get(key: ChunkId): Promise<Buffer | null>;
  /** false when the tier skipped the write (full, down); never throws for those. */
  put(key: ChunkId, payload: Buffer): Promise<boolean>;
  /** Number of keys that existed and were removed. */
  delete(keys: readonly ChunkId[]): Promise<number>;
  close(): Promise<void>;
}

/**
 * A tier behind the host tier. It may say it is down; then it is not asked
 * at all. getInto, when offered, reads a chunk straight into a host slab (no
 * second copy); the tier releases the slab itself on a miss.
 */
export interface RemoteTier extends Tier {
  readonly available?: boolean;
  getInto?(key: ChunkId, allocate: (bytes: number) => Slab | null): Promise<Slab | null>;
  /** Removes every chunk of a namespace; returns how many chunks it removed. */
  deleteNamespace?(namespaceId: string): Promise<number>;
}
