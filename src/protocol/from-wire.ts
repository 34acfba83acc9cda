/**
 * Wire -> domain values: the decoded protobuf shapes (every field optional,
 * 64-bit numbers possibly Long) become the manager's plain types. Absent
 * fields take the proto3 defaults here, once, so the dispatcher and the
 * manager never see null.
 */
import { BadRequestError } from '../errors.js';
import { makeNamespace, rankNamespace, type Namespace } from '../chunking/namespace.js';
import type { ChunkAddress } from '../manager/chunk-manager.js';
import type { kvtier } from './gen/kvtier.js';

type Long = { toNumber(): number };

export function address(a: kvtier.v1.IChunkAddress | null | undefined): ChunkAddress {
  if (a == null) throw new BadRequestError('expected a chunk address (tokens or keys)');
  const hasTokens = a.tokens != null && a.tokens.length > 0;
  const hasKeys = a.keys != null && a.keys.length > 0;
  if (hasTokens && hasKeys) throw new BadRequestError('expected tokens or keys in the chunk address, not both');
  const seed = a.seed != null && a.seed.length > 0 ? { seed: a.seed } : {};
  if (hasKeys) return { keys: a.keys!, ...seed };
  return { tokens: a.tokens ?? new Uint8Array(0), ...seed };
}

/** Invalidate's address: an empty one means the whole namespace (null). */
export function addressOrAll(a: kvtier.v1.IChunkAddress | null | undefined): ChunkAddress | null {
  const empty = a == null || ((a.tokens == null || a.tokens.length === 0) && (a.keys == null || a.keys.length === 0));
  return empty ? null : address(a);
}

/** A view of the decoded bytes (protobufjs hands out Uint8Array slices of the frame), not a copy. */
export function asBuffer(b: Uint8Array | null | undefined): Buffer {
  if (b == null) return Buffer.alloc(0);
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

export function num(v: number | Long | null | undefined): number {
  if (v == null) return 0;
  return typeof v === 'number' ? v : Number(v);
}

/** The namespace a Hello's fingerprint names; chunkSize is already checked against the daemon's. */
export function namespaceOf(fp: kvtier.v1.INamespaceFingerprint, chunkSize: number): Namespace {
  return makeNamespace({
    model: fp.model ?? '', dtype: fp.dtype ?? '', kvLayout: fp.kvLayout ?? '', chunkSize,
    blockSize: fp.blockSize ?? 0, tpRank: fp.tpRank ?? 0, tpSize: fp.tpSize ?? 0, ppRank: fp.ppRank ?? 0,
    ppSize: fp.ppSize ?? 0, mla: fp.mla === true, cacheSalt: fp.cacheSalt ?? '',
  });
}

/**
 * Hello.lookup_ranks as namespaces of `ns`'s engine (same chain root), in
 * order; null when none was sent. Each rank must lie below tp_size/pp_size
 * (a size of 0 counts as 1), and there is at most one entry per rank.
 */
export function lookupRanksOf(ns: Namespace, ranks: kvtier.v1.IRank[] | null | undefined): Namespace[] | null {
  if (ranks == null || ranks.length === 0) return null;
  const tpSize = Math.max(1, ns.fingerprint.tpSize);
  const ppSize = Math.max(1, ns.fingerprint.ppSize);
  if (ranks.length > tpSize * ppSize) {
    throw new BadRequestError(`expected at most tp_size x pp_size = ${tpSize * ppSize} lookup_ranks, got ${ranks.length}`);
  }
  const memo = new Map<number, Namespace>();
  return ranks.map((r) => {
    const tp = r.tpRank ?? 0;
    const pp = r.ppRank ?? 0;
    if (tp >= tpSize || pp >= ppSize) {
      throw new BadRequestError(`lookup rank (tp ${tp}, pp ${pp}) is outside tp_size ${tpSize} x pp_size ${ppSize}`);
    }
    const key = pp * tpSize + tp;
    let out = memo.get(key);
    if (out === undefined) {
      out = rankNamespace(ns, tp, pp);
      memo.set(key, out);
    }
    return out;
  });
}
