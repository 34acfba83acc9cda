/**
 * The contract every storage tier keeps (host RAM, local disk, Valkey).
 *
 * A tier stores opaque chunk payloads under a ChunkKey. `get` returns only
 * bytes the tier has verified (for Valkey: header, namespace, length and
 * checksum); anything else is a miss (null), never an error for the caller
 * to interpret. test/tiers/tier-contract.ts runs one suite against every tier.
 */

export type TierName = 'host' | 'disk' | 'valkey';

/** A chunk's identity: its namespace and the hex of its 32-byte prefix hash. */
export interface ChunkKey {
  readonly namespaceId: string;
  readonly hash: string;
}

export interface Tier {
  readonly name: TierName;
  /** One answer per key, in order. */
  contains(keys: readonly ChunkKey[]): Promise<boolean[]>;
  /** Verified payload, or null for a miss. */
  get(key: ChunkKey): Promise<Buffer | null>;
  /** false when the tier skipped the write (full, down); never throws for those. */
  put(key: ChunkKey, payload: Buffer): Promise<boolean>;
  /** Number of keys that existed and were removed. */
  delete(keys: readonly ChunkKey[]): Promise<number>;
  close(): Promise<void>;
}

export function chunkKeyString(key: ChunkKey): string {
  return `${key.namespaceId}:${key.hash}`;
}
