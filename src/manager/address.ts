/**
 * A request's chunk address (tokens, or opaque keys) turned into ChunkIds.
 *
 *   tokens ─► prefix-hash chain ─┐
 *   keys   ─► namespaced hashes ─┴─► one Buffer of n*32 bytes ─► ChunkId per chunk
 *                                                               and per rank namespace
 *
 * This is the only place a ChunkId is built from a request: every hop after
 * it (host, leases, fetches, write-behind, Valkey) reads the same object.
 * Every rank of an engine shares the chain root (hash version 2,
 * namespace.ts), so a multi-rank Lookup hashes once and each rank's id of a
 * chunk is the same hash under that rank's namespace id.
 * `stop(i, ids)` ends the walk after chunk i, so a Lookup hashes only as far
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

export interface ResolvedRanks {
  /** ids[r][i]: chunk i in namespace r, for each namespace asked. */
  ids: ChunkId[][];
  count: number;
  tokensOf(i: number): number;
}

export function resolveAddress(p: ManagerParts, ns: Namespace, address: ChunkAddress, stop?: (i: number, id: ChunkId) => boolean): ResolvedAddress {
  const r = resolveRanks(p, [ns], address, stop === undefined ? undefined : (i, ids) => stop(i, ids[0][i]));
  return { ids: r.ids[0], count: r.count, tokensOf: r.tokensOf };
}

/**
 * The address in each of `spaces` (namespaces of one engine: one chain root).
 * `stop(i, ids)` is called once chunk i has its id in every namespace.
 */
export function resolveRanks(p: ManagerParts, spaces: readonly Namespace[], address: ChunkAddress, stop?: (i: number, ids: ChunkId[][]) => boolean): ResolvedRanks {
  const chunkSize = p.chunkSize;
  const ids: ChunkId[][] = spaces.map(() => []);
  const first = spaces[0];
  const root = seededRoot(first.root, address.seed);
  const add = (hashes: Buffer, i: number): void => {
    const id = ChunkId.at(first.id, hashes, i);
    ids[0].push(id);
    for (let r = 1; r < spaces.length; r++) ids[r].push(id.inNamespace(spaces[r].id));
  };
  if ('tokens' in address) {
    checkPacked(address.tokens);
    const total = address.tokens.byteLength >>> 2;
    const { count } = hashTokenChunks(root, address.tokens, chunkSize, p.saveUnfullChunk, (i, hashes) => {
      add(hashes, i);
      return stop !== undefined && stop(i, ids);
    }, p.chain);
    return { ids, count, tokensOf: (i) => Math.min(chunkSize, total - i * chunkSize) };
  }
  if (address.keys.length === 0) throw new BadRequestError('expected tokens or at least one key in the chunk address');
  const hashes = hashKeys(root, address.keys);
  let count = address.keys.length;
  for (let i = 0; i < address.keys.length; i++) {
    add(hashes, i);
    if (stop !== undefined && stop(i, ids)) {
      count = i + 1;
      break;
    }
  }
  return { ids, count, tokensOf: () => 0 };
}
