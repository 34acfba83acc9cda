/** The zero-copy Lookup frame decodes exactly like the generic encoder's frame. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameDecoder } from '../../src/protocol/framing.js';
import { decodeEnvelope, encodeFrame, lookupFrameParts } from '../../src/protocol/messages.js';

describe('lookupFrameParts', () => {
  it('decodes to the same Lookup as encodeFrame, for any tokens, ttl, no_lease and id', () => {
    fc.assert(fc.property(
      fc.uint8Array({ minLength: 4, maxLength: 70_000 }).map((b) => b.subarray(0, b.length & ~3)),
      fc.oneof(fc.constant(0), fc.nat({ max: 2 ** 31 - 1 })),
      fc.boolean(),
      fc.nat({ max: 2 ** 40 }),
      (tokens, ttl, noLease, id) => {
        const parts = lookupFrameParts(id, tokens, ttl, noLease);
        const frames = new FrameDecoder(1 << 30).push(Buffer.concat(parts));
        expect(frames.length).toBe(1);
        const got = decodeEnvelope(frames[0]);
        const want = decodeEnvelope(encodeFrame({ id, lookup: { address: { tokens }, leaseTtlMs: ttl, noLease } }).subarray(4));
        expect(got.id).toBe(id);
        expect(got.body).toBe('lookup');
        expect(Buffer.from(got.lookup!.address!.tokens!).equals(Buffer.from(tokens))).toBe(true);
        expect(got.lookup!.leaseTtlMs).toBe(want.lookup!.leaseTtlMs);
        expect(got.lookup!.noLease).toBe(want.lookup!.noLease);
        // The token bytes are the caller's, not a copy.
        expect(parts[1].buffer).toBe(tokens.buffer);
      },
    ), { numRuns: 200 });
  });
});
