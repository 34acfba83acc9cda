/**
 * Hashing in the addon: the prefix hash chain (same results as the
 * JavaScript chain in src/chunking/prefix-hash.ts) and the payload checksum.
 */
import { badRequest } from './errors.js';
import { load, type ChainMemoStats } from './loader.js';

/**
 * The prefix hash chain for `count` chunks of `chunkBytes` bytes of `tokens`
 * (the last may be shorter), continuing from `prev`, into `out` (count*32).
 * Same results as the JavaScript chain in src/chunking/prefix-hash.ts.
 */
export function chainHashes(prev: Uint8Array, tokens: Uint8Array, chunkBytes: number, count: number, out: Uint8Array): void {
  if (prev.byteLength !== 32) throw badRequest(`expected 32 bytes for the previous hash, got ${prev.byteLength}`);
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1) throw badRequest(`expected a positive integer for chunkBytes, got ${chunkBytes}`);
  if (!Number.isSafeInteger(count) || count < 0 || out.byteLength < count * 32 || (count > 0 && (count - 1) * chunkBytes >= tokens.byteLength)) {
    throw badRequest(`expected ${count} chunks to fit ${tokens.byteLength} token bytes and ${out.byteLength} output bytes`);
  }
  if (out.buffer === tokens.buffer && out.byteOffset < tokens.byteOffset + tokens.byteLength && tokens.byteOffset < out.byteOffset + count * 32) {
    throw badRequest('expected the output hashes not to overlap the tokens they are hashed from');
  }
  load().chainHashes(prev, tokens, chunkBytes, count, out);
}

/**
 * Sizes chainHashes' memo of chain steps (native/src/prefix-hash.h) to at
 * most `bytes`, dropping what it held; 0 turns it off. 32 MiB until set.
 */
export function setChainMemo(bytes: number): void {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw badRequest(`expected a non-negative integer for bytes, got ${bytes}`);
  load().setChainMemo(bytes);
}

/** The chain memo's table size and its hits and misses since the addon loaded. */
export function chainMemoStats(): ChainMemoStats {
  return load().chainMemoStats();
}

/**
 * The payload checksum (XXH3-64) as 16 hex digits, computed by the addon
 * (tests compare it with src/tiers/checksum.ts). With `pieceBytes` the addon
 * feeds the bytes to its streaming hasher in pieces of that size, as the I/O
 * threads do with each send and recv.
 */
export function nativePayloadSum(bytes: Uint8Array, pieceBytes = 0): string {
  if (!Number.isSafeInteger(pieceBytes) || pieceBytes < 0) throw badRequest(`expected a non-negative integer for pieceBytes, got ${pieceBytes}`);
  return load().payloadSum(bytes, pieceBytes);
}

