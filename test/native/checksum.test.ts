/**
 * The addon's payload checksum (XXH3-64: it sums segments on the Valkey I/O
 * threads and payloads on the disk threads) gives the same 16 hex digits as
 * src/tiers/checksum.ts (@node-rs/xxhash) for every length class XXH3 has
 * (0, 1-3, 4-8, 9-16, 17-128, 129-240 bytes, then the long-input loop with
 * its 64-byte stripes and 1 KiB blocks), and the same when its streaming
 * state is fed pieces whose boundaries fall inside a stripe or a block (as
 * recv() and send() cut a segment).
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { nativeAvailable, nativePayloadSum } from '../../native/index.js';
import { payloadChecksum } from '../../src/tiers/checksum.js';

describe.skipIf(!nativeAvailable())('native payload checksum', () => {
  it('matches payloadChecksum() on 0..300 bytes and on MiB-sized buffers', () => {
    for (let n = 0; n <= 300; n++) {
      const b = randomBytes(n);
      expect(nativePayloadSum(b)).toBe(payloadChecksum(b));
    }
    for (const n of [1023, 1024, 1025, 4095, 65_536, (1 << 20) + 13]) {
      const b = randomBytes(n);
      expect(nativePayloadSum(b)).toBe(payloadChecksum(b));
    }
  });

  it('matches payloadChecksum() when fed in pieces of any size', () => {
    for (const n of [0, 63, 64, 65, 240, 241, 1025, 4097, (1 << 20) + 13]) {
      const b = randomBytes(n);
      for (const piece of [1, 3, 63, 64, 65, 1023, 4096 + 5, 256 * 1024]) {
        expect(nativePayloadSum(b, piece), `${n} bytes in pieces of ${piece}`).toBe(payloadChecksum(b));
      }
    }
  });
});
