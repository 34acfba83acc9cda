/**
 * Wire -> domain values: the decoded protobuf shapes (every field optional,
 * 64-bit numbers possibly Long) become the manager's plain types. Absent
 * fields take the proto3 defaults here, once, so the dispatcher and the
 * manager never see null.
 */
import { BadRequestError } from '../errors.js';
import { makeNamespace, type Namespace } from '../chunking/namespace.js';
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
