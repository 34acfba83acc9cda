/**
 * Checksums of the stored formats, from @node-rs/xxhash: an implementation
 * independent of the addon's (native/src/checksum.h), which computes the same
 * sums on its I/O threads; test/native/checksum.test.ts holds the two to
 * each other.
 *
 * Non-cryptographic on purpose: the threat is bit rot, truncation and stray
 * writes, not an adversary (one who can write to the Valkey or the disk can
 * write a matching checksum too); SHA-256 measured ~1.5 GB/s here. Sums
 * travel as 16-digit lowercase hex strings, so that the msgpackr header needs
 * no BigInt support.
 */

import { xxh3, xxh64 } from '@node-rs/xxhash';

/**
 * XXH3-64 (seed 0) of chunk bytes as a tier stores them: Valkey format 2's
 * inline values and segments, disk format 2's payloads.
 */
export function payloadChecksum(bytes: Uint8Array): string {
  return xxh3.xxh64(bytes).toString(16).padStart(16, '0');
}

/** xxh64 (seed 0) of a disk header's fields (docs/disk.md). */
export function headerChecksum(bytes: Uint8Array): string {
  return xxh64(bytes).toString(16).padStart(16, '0');
}
