/**
 * The prefix hash chain that names every chunk.
 *
 *   h0  = namespace root (namespace.ts)
 *   d_i = SHA-256(tokens of chunk i as little-endian u32)
 *   h_i = SHA-256(h_{i-1} || d_i)
 *
 * h_i covers every token before the end of chunk i, so equal hashes mean
 * equal prefixes, in every process and on every machine (no language hash
 * seeds anywhere). Opaque client keys (SGLang page hashes) are already
 * prefix-chained by their owner and are only scoped to the namespace:
 *
 *   h_i = SHA-256(h0 || "k" || key_i)
 *
 * A per-request seed (ChunkAddress.seed: a tenant salt, a LoRA adapter,
 * multimodal hashes) moves the chain's start, for tokens and keys alike:
 *
 *   h0' = SHA-256(h0 || "s" || seed)        (no seed: h0' = h0)
 *
 * Results come back as one Buffer of n*32 bytes: no per-chunk objects on the
 * lookup path. The caller injects the chain backend: the daemon passes the
 * native addon's (one call per batch of chunks instead of two SHA-256 calls
 * per chunk from JavaScript, about 3x faster) when it loaded; null runs the
 * JavaScript chain below, the fallback and the reference the tests hold the
 * native one to. This module loads nothing: it sits below native/.
 */
import { hash } from 'node:crypto';

/** A native chain: writes h_1..h_count into `out` from h_0 = `prev` (native/index.ts chainHashes). */
export type ChainFn = (prev: Uint8Array, tokens: Uint8Array, chunkBytes: number, count: number, out: Uint8Array) => void;

/** Chunks hashed per native call: bounds the work wasted past an early stop. */
const NATIVE_BATCH = 32;

export const HASH_BYTES = 32;

/** The chain's start for a request: the namespace root, or the root seeded by `seed`. */
export function seededRoot(root: Buffer, seed: Uint8Array | undefined): Buffer {
  if (seed === undefined || seed.byteLength === 0) return root;
  return hash('sha256', Buffer.concat([root.subarray(0, HASH_BYTES), Buffer.from('s'), seed]), 'buffer');
}

/** Number of chunks a prompt of `tokenCount` tokens yields. */
export function chunkCount(tokenCount: number, chunkSize: number, includePartial: boolean): number {
  const full = Math.floor(tokenCount / chunkSize);
  return includePartial && tokenCount % chunkSize !== 0 ? full + 1 : full;
}

/**
 * Hashes of the first `limit` chunks of `tokens` (packed LE u32).
 * Stops early when `stop(i, hashes)` returns true after chunk i is hashed,
 * so a lookup pays only for the chunks it needs.
 */
export function hashTokenChunks(
  root: Buffer,
  tokens: Uint8Array,
  chunkSize: number,
  includePartial: boolean,
  stop?: (index: number, hashes: Buffer) => boolean,
  chain: ChainFn | null = null,
): { hashes: Buffer; count: number } {
  const tokenCount = tokens.byteLength >>> 2;
  const n = chunkCount(tokenCount, chunkSize, includePartial);
  const out = Buffer.allocUnsafe(n * HASH_BYTES);
  if (chain !== null) {
    const chunkBytes = chunkSize * 4;
    const used = tokens.subarray(0, tokenCount * 4);
    for (let first = 0; first < n; first += NATIVE_BATCH) {
      const count = Math.min(NATIVE_BATCH, n - first);
      const prev = first === 0 ? root.subarray(0, HASH_BYTES) : out.subarray((first - 1) * HASH_BYTES, first * HASH_BYTES);
      chain(prev, used.subarray(first * chunkBytes), chunkBytes, count, out.subarray(first * HASH_BYTES, (first + count) * HASH_BYTES));
      if (stop !== undefined) {
        for (let i = first; i < first + count; i++) {
          if (stop(i, out)) return { hashes: out.subarray(0, (i + 1) * HASH_BYTES), count: i + 1 };
        }
      }
    }
    return { hashes: out, count: n };
  }
  const pair = Buffer.allocUnsafe(2 * HASH_BYTES);
  root.copy(pair, 0, 0, HASH_BYTES);
  const chunkBytes = chunkSize * 4;
  let count = 0;
  for (let i = 0; i < n; i++) {
    const start = i * chunkBytes;
    const end = Math.min(start + chunkBytes, tokenCount * 4);
    const digest = hash('sha256', tokens.subarray(start, end), 'buffer');
    digest.copy(pair, HASH_BYTES);
    const h = hash('sha256', pair, 'buffer');
    h.copy(out, i * HASH_BYTES);
    h.copy(pair, 0);
    count = i + 1;
    if (stop !== undefined && stop(i, out)) break;
  }
  return { hashes: out.subarray(0, count * HASH_BYTES), count };
}

export function hashKeys(root: Buffer, keys: readonly Uint8Array[]): Buffer {
  const out = Buffer.allocUnsafe(keys.length * HASH_BYTES);
  const k = Buffer.from('k');
  for (let i = 0; i < keys.length; i++) {
    hash('sha256', Buffer.concat([root, k, keys[i]]), 'buffer').copy(out, i * HASH_BYTES);
  }
  return out;
}

export function hashHex(hashes: Buffer, index: number): string {
  return hashes.toString('hex', index * HASH_BYTES, (index + 1) * HASH_BYTES);
}
