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
        const frames: Buffer[] = [];
        new FrameDecoder(1 << 30).push(Buffer.concat(parts), (f) => frames.push(f));
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

describe('FrameDecoder', () => {
  const frame = (fill: number, n: number): Buffer => {
    const f = Buffer.alloc(4 + n, fill);
    f.writeUInt32LE(n, 0);
    return f;
  };

  it('splits any stream, cut anywhere, into the frames written, in both modes', () => {
    fc.assert(fc.property(
      fc.array(fc.uint8Array({ maxLength: 3000 }), { maxLength: 8 }),
      fc.array(fc.nat({ max: 4000 }), { maxLength: 12 }),
      fc.boolean(),
      (payloads, cuts, lent) => {
        const stream = Buffer.concat(payloads.map((p) => {
          const f = Buffer.alloc(4 + p.length);
          f.writeUInt32LE(p.length, 0);
          f.set(p, 4);
          return f;
        }));
        const at = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        const dec = new FrameDecoder(1 << 20, { lent });
        const got: Buffer[] = [];
        let from = 0;
        for (const to of [...at, stream.length]) {
          // Each push's bytes are overwritten once it returns, as the daemon's shared read buffer is.
          const piece = Buffer.from(stream.subarray(from, to));
          dec.push(piece, (f) => got.push(Buffer.from(f)));
          piece.fill(0xee);
          from = to;
        }
        expect(got.map((g) => g.toString('hex'))).toEqual(payloads.map((p) => Buffer.from(p).toString('hex')));
        expect(dec.bufferedBytes).toBe(0);
      },
    ), { numRuns: 500 });
  });

  it('kept mode: a frame stays the caller\'s after later frames are assembled', () => {
    const dec = new FrameDecoder(1 << 30);
    const kept: Buffer[] = [];
    for (const fill of [1, 2, 3]) {
      const f = frame(fill, 300_000);
      for (let i = 0; i < f.length; i += 65536) dec.push(f.subarray(i, i + 65536), (x) => kept.push(x));
    }
    expect(kept.map((k) => k.every((x, _i, a) => x === a[0]) && k[0])).toEqual([1, 2, 3]);
    expect(kept.some((k) => dec.lends(k))).toBe(false);
  });

  it('lent mode: one assembly buffer for every straddling frame, and lends() says which frames are loans', () => {
    const dec = new FrameDecoder(1 << 30, { lent: true });
    const seen: Array<{ buffer: ArrayBufferLike; lent: boolean }> = [];
    const feed = (f: Buffer): void => {
      for (let i = 0; i < f.length; i += 65536) dec.push(f.subarray(i, i + 65536), (x) => seen.push({ buffer: x.buffer, lent: dec.lends(x) }));
    };
    feed(frame(1, 300_000));
    feed(frame(2, 200_000));
    feed(frame(3, 30_000)); // one push: a view of the pushed bytes
    expect(seen.map((s) => s.lent)).toEqual([true, true, true]);
    expect(seen[1].buffer).toBe(seen[0].buffer);
    // Past the reused buffer's bound: a buffer of its own, not a loan.
    feed(frame(4, (4 << 20) + 1));
    expect(seen[3].lent).toBe(false);
    expect(seen[3].buffer).not.toBe(seen[0].buffer);
  });

  it('a claimed length allocates nothing before its bytes arrive, and then only as they arrive, in both modes', () => {
    for (const lent of [false, true]) {
      const dec = new FrameDecoder(1 << 30, { lent });
      const head = Buffer.alloc(4);
      head.writeUInt32LE(1 << 30, 0);
      const before = process.memoryUsage().arrayBuffers;
      dec.push(head, () => {});
      const afterHeader = process.memoryUsage().arrayBuffers - before;
      dec.push(Buffer.alloc(4, 1), () => {});
      const afterBytes = process.memoryUsage().arrayBuffers - before;
      expect(dec.bufferedBytes).toBe(8);
      // Nothing for the header; the first allocation (64 KiB) for the first bytes, not the gigabyte claimed.
      expect(afterHeader).toBeLessThan(16 << 10);
      expect(afterBytes).toBeLessThan(1 << 20);
    }
  });
});
