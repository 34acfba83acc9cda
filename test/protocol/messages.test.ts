/** The zero-copy Lookup frame decodes exactly like the generic encoder's frame. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameDecoder } from '../../src/protocol/framing.js';
import { ACK, PONG, decodeEnvelope, emptyBodyFrame, encodeFrame, encodeReply, lookupFrameParts, plainPingId } from '../../src/protocol/messages.js';

describe('lookupFrameParts', () => {
  it('decodes to the same Lookup as encodeFrame, for any tokens, seed, ttl, no_lease and id', () => {
    fc.assert(fc.property(
      fc.uint8Array({ minLength: 4, maxLength: 70_000 }).map((b) => b.subarray(0, b.length & ~3)),
      fc.oneof(fc.constant(0), fc.nat({ max: 2 ** 31 - 1 })),
      fc.boolean(),
      fc.nat({ max: 2 ** 40 }),
      fc.option(fc.uint8Array({ minLength: 0, maxLength: 300 })),
      (tokens, ttl, noLease, id, seed) => {
        const parts = lookupFrameParts(id, tokens, ttl, noLease, seed);
        const frames = new FrameDecoder(1 << 30).push(Buffer.concat(parts));
        expect(frames.length).toBe(1);
        const got = decodeEnvelope(frames[0]);
        const want = decodeEnvelope(encodeFrame({ id, lookup: { address: { tokens }, leaseTtlMs: ttl, noLease } }).subarray(4));
        expect(got.id).toBe(id);
        expect(got.body).toBe('lookup');
        expect(Buffer.from(got.lookup!.address!.tokens!).equals(Buffer.from(tokens))).toBe(true);
        expect(got.lookup!.leaseTtlMs).toBe(want.lookup!.leaseTtlMs);
        expect(got.lookup!.noLease).toBe(want.lookup!.noLease);
        expect(Buffer.from(got.lookup!.address!.seed ?? []).equals(Buffer.from(seed ?? []))).toBe(true);
        // The token bytes are the caller's, not a copy.
        expect(parts[1].buffer).toBe(tokens.buffer);
      },
    ), { numRuns: 200 });
  });
});

describe('emptyBodyFrame', () => {
  it('writes the same bytes as the generated encoder for Ping, Pong and Ack, for any id', () => {
    fc.assert(fc.property(fc.constantFrom('ping', 'pong', 'ack' as const), fc.nat({ max: 2 ** 53 - 1 }), (body, id) => {
      const want = encodeFrame({ id, [body]: {} });
      expect(emptyBodyFrame(id, body).equals(want)).toBe(true);
      const env = decodeEnvelope(emptyBodyFrame(id, body).subarray(4));
      expect([env.id, env.body]).toEqual([id, body]);
    }), { numRuns: 300 });
  });

  it('is what encodeReply sends for the shared PONG and ACK; other replies go through protobufjs', () => {
    expect(encodeReply(7, PONG).equals(encodeFrame({ id: 7, pong: {} }))).toBe(true);
    expect(encodeReply(2 ** 40, ACK).equals(encodeFrame({ id: 2 ** 40, ack: {} }))).toBe(true);
    const other = { lookupOk: { hitTokens: 512, hitChunks: 2, leaseId: 9 } };
    expect(encodeReply(3, other).equals(encodeFrame({ id: 3, ...other }))).toBe(true);
  });
});

describe('plainPingId', () => {
  it('reads the id of every plain Ping frame, and -1 for any other payload', () => {
    fc.assert(fc.property(fc.nat({ max: 2 ** 53 - 1 }), (id) => {
      expect(plainPingId(encodeFrame({ id, ping: {} }).subarray(4))).toBe(id);
      expect(plainPingId(encodeFrame({ id, pong: {} }).subarray(4))).toBe(-1);
      expect(plainPingId(encodeFrame({ id, releaseLease: { leaseId: 1 } }).subarray(4))).toBe(-1);
    }), { numRuns: 300 });
    fc.assert(fc.property(fc.uint8Array({ maxLength: 16 }), (bytes) => {
      const got = plainPingId(Buffer.from(bytes));
      if (got < 0) return;
      // Whatever it accepts decodes as exactly that Ping.
      const env = decodeEnvelope(Buffer.from(bytes));
      expect([env.body, env.id]).toEqual(['ping', got]);
    }), { numRuns: 2000 });
    expect(plainPingId(Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x62, 0x00]))).toBe(-1);
  });
});

describe('FrameDecoder scratch reuse', () => {
  it('reuses the assembly buffer only after reclaim, and never hands out bytes another frame still owns', () => {
    const dec = new FrameDecoder(1 << 30);
    const frame = (fill: number, n: number): Buffer => {
      const f = Buffer.alloc(4 + n, fill);
      f.writeUInt32LE(n, 0);
      return f;
    };
    const feed = (f: Buffer): Buffer[] => {
      const out: Buffer[] = [];
      for (let i = 0; i < f.length; i += 65536) out.push(...dec.push(f.subarray(i, i + 65536)));
      return out;
    };
    const [a] = feed(frame(1, 300_000));
    dec.reclaim(a);
    const [b] = feed(frame(2, 300_000));
    expect(b.buffer).toBe(a.buffer); // reclaimed: reused
    const [c] = feed(frame(3, 300_000));
    expect(c.buffer).not.toBe(b.buffer); // b not reclaimed: it keeps its bytes
    expect(b.every((x) => x === 2)).toBe(true);
    expect(c.every((x) => x === 3)).toBe(true);
  });
});
