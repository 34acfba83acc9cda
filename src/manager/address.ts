/**
 * A request's chunk address (tokens, or opaque keys) turned into ChunkIds.
 *
 *   tokens ─► prefix-hash chain ─┐
 *   keys   ─► namespaced hashes ─┴─► one Buffer of n*32 bytes ─► ChunkId per chunk
 *
 * Ids are built from these hashes only (here, or by a Lookup for the chunks
 * it must name): every hop after that (host, leases, fetches, write-behind,
 * Valkey) reads the same object.
 * Every rank of an engine shares the chain (hash version 2, namespace.ts),
 * so a multi-rank Lookup hashes the address once, in its first rank's
 * namespace (hashAddress: raw hashes, no ids), and names a chunk of another
 * rank with ChunkId.inNamespace. Its `stop(i, hashes)` ends the walk after
 * chunk i, so a Lookup hashes only as far as it matches.
 */
import type { Namespace } from '../chunking/namespace.js';
import { hashKeys, hashTokenChunks, seededRoot } from '../chunking/prefix-hash.js';
import { checkPacked } from '../chunking/tokens.js';
import { BadRequestError } from '../errors.js';
import { chunkIds, type ChunkId } from '../tiers/chunk-id.js';
import type { ManagerParts } from './parts.js';

/** `seed`: the request's chain seed (ChunkAddress.seed), absent or empty for none. */
export type ChunkAddress = ({ tokens: Uint8Array } | { keys: Uint8Array[] }) & { seed?: Uint8Array };

export interface HashedAddress {
  /** The chain hashes, 32 bytes per chunk hashed. */
  hashes: Buffer;
  count: number;
  /** Tokens covered by chunk i (0 for opaque keys). */
  tokensOf(i: number): number;
}

export interface ResolvedAddress extends HashedAddress {
  /** One ChunkId per chunk resolved, in order. */
  ids: ChunkId[];
}

/**
 * The address's chain hashes, no ChunkId built: a Lookup reads the host tier
 * from the raw bytes and prints an id only for a chunk it must name.
 * `stop(i, hashes)` ends the walk after chunk i.
 */
export function hashAddress(p: ManagerParts, ns: Namespace, address: ChunkAddress, stop?: (i: number, hashes: Buffer) => boolean): HashedAddress {
  const chunkSize = p.chunkSize;
  const root = seededRoot(ns.root, address.seed);
  if ('tokens' in address) {
    checkPacked(address.tokens);
    const total = address.tokens.byteLength >>> 2;
    const { hashes, count } = hashTokenChunks(root, address.tokens, chunkSize, p.saveUnfullChunk, stop, p.chain);
    return { hashes, count, tokensOf: (i) => Math.min(chunkSize, total - i * chunkSize) };
  }
  if (address.keys.length === 0) throw new BadRequestError('expected tokens or at least one key in the chunk address');
  const hashes = hashKeys(root, address.keys);
  let count = address.keys.length;
  if (stop !== undefined) {
    for (let i = 0; i < address.keys.length; i++) {
      if (stop(i, hashes)) {
        count = i + 1;
        break;
      }
    }
  }
  return { hashes, count, tokensOf: () => 0 };
}

/** The address's ChunkIds, one per chunk (store, invalidate, admin). */
export function resolveAddress(p: ManagerParts, ns: Namespace, address: ChunkAddress): ResolvedAddress {
  const hashed = hashAddress(p, ns, address);
  return { ...hashed, ids: chunkIds(ns.id, hashed.hashes, hashed.count) };
}
