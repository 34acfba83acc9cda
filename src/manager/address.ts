/**
 * A request's chunk address (tokens, or opaque keys) turned into ChunkIds.
 *
 *   tokens ─► prefix-hash chain ─┐
 *   keys   ─► namespaced hashes ─┴─► one Buffer of n*32 bytes ─► ChunkId per chunk
 *
 * This is the only place a ChunkId is built from a request: every hop after
 * it (host, leases, fetches, write-behind, Valkey) reads the same object.
 * Every rank of an engine shares the chain (hash version 2, namespace.ts),
 * so a multi-rank Lookup resolves the address once, in its first rank's
 * namespace, and moves an id to another rank with ChunkId.inNamespace.
 * `stop(i, id)` ends the walk after chunk i, so a Lookup hashes only as far
 * as it matches.
 */
import type { Namespace } from '../chunking/namespace.js';
import { hashKeys, hashTokenChunks, seededRoot } from '../chunking/prefix-hash.js';
import { checkPacked } from '../chunking/tokens.js';
import { BadRequestError } from '../errors.js';
import { ChunkId } from '../tiers/chunk-id.js';
import type { ManagerParts } from './parts.js';

/** `seed`: the request's chain seed (ChunkAddress.seed), absent or empty for none. */
export type ChunkAddress = ({ tokens: Uint8Array } | { keys: Uint8Array[] }) & { seed?: Uint8Array };

export interface ResolvedAddress {
  /** One ChunkId per chunk resolved, in order. */
  ids: ChunkId[];
  count: number;
  /** Tokens covered by chunk i (0 for opaque keys). */
  tokensOf(i: number): number;
}

export function resolveAddress(p: ManagerParts, ns: Namespace, address: ChunkAddress, stop?: (i: number, id: ChunkId) => boolean): ResolvedAddress {
  const chunkSize = p.chunkSize;
  const ids: ChunkId[] = [];
  const root = seededRoot(ns.root, address.seed);
  if ('tokens' in address) {
    checkPacked(address.tokens);
    const total = address.tokens.byteLength >>> 2;
    const { count } = hashTokenChunks(root, address.tokens, chunkSize, p.saveUnfullChunk, (i, hashes) => {
      const id = ChunkId.at(ns.id, hashes, i);
      ids.push(id);
      return stop !== undefined && stop(i, id);
    }, p.chain);
    return { ids, count, tokensOf: (i) => Math.min(chunkSize, total - i * chunkSize) };
  }
  if (address.keys.length === 0) throw new BadRequestError('expected tokens or at least one key in the chunk address');
  const hashes = hashKeys(root, address.keys);
  let count = address.keys.length;
  for (let i = 0; i < address.keys.length; i++) {
    const id = ChunkId.at(ns.id, hashes, i);
    ids.push(id);
    if (stop !== undefined && stop(i, id)) {
      count = i + 1;
      break;
    }
  }
  return { ids, count, tokensOf: () => 0 };
}
