/**
 * The addon's xxh64 (it checksums segments on the Valkey I/O threads) gives
 * the same 16 hex digits as src/tiers/checksum.ts for every length class the
 * algorithm has (under 4, 8, 32 bytes, the 32-byte stripes, a tail of each),
 * and the same when its streaming hasher is fed pieces whose boundaries fall
 * inside a stripe (as recv() and send() cut a segment).
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { nativeAvailable, nativeXxh64 } from '../../native/index.js';
import { checksum } from '../../src/tiers/checksum.js';

describe.skipIf(!nativeAvailable())('native xxh64', () => {
  it('matches checksum() on 0..200 bytes and on MiB-sized buffers', () => {
    for (let n = 0; n <= 200; n++) {
      const b = randomBytes(n);
      expect(nativeXxh64(b)).toBe(checksum(b));
    }
    for (const n of [4095, 65_536, (1 << 20) + 13]) {
      const b = randomBytes(n);
      expect(nativeXxh64(b)).toBe(checksum(b));
    }
  });

  it('matches checksum() when fed in pieces of any size', () => {
    for (const n of [0, 31, 32, 33, 100, 4097, (1 << 20) + 13]) {
      const b = randomBytes(n);
      for (const piece of [1, 3, 7, 31, 32, 33, 4096 + 5]) expect(nativeXxh64(b, piece), `${n} bytes in pieces of ${piece}`).toBe(checksum(b));
    }
  });
});
