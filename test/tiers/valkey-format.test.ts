/** The value layout and serde, without a server: round trips and rejection of garbage. */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BadRequestError, CorruptValueError } from '../../src/errors.js';
import { payloadChecksum } from '../../src/tiers/checksum.js';
import { decode, encode, parseSerde, shuffle2, unshuffle2, SERDE_NAMES } from '../../src/tiers/serde.js';
import { ChunkId } from '../../src/tiers/chunk-id.js';
import { chunkRedisKey, decodeValue, encodeValue, FORMAT_VERSION, segmentCount, segmentRedisKey } from '../../src/tiers/valkey-format.js';

describe('valkey value layout', () => {
  it('keys share one hash tag per chunk', () => {
    const base = chunkRedisKey('kvtier', ChunkId.of('ns1', 'ab12'));
    expect(base).toBe('kvtier:{ns1:ab12}');
    expect(segmentRedisKey(base, 3)).toBe('kvtier:{ns1:ab12}:s3');
  });

  it('rejects ids that could break the hash tag', () => {
    expect(() => chunkRedisKey('p', ChunkId.of('a}b', 'ab'))).toThrow(BadRequestError);
    expect(() => chunkRedisKey('p', ChunkId.of('a', ''))).toThrow(BadRequestError);
  });

  it('inline values round-trip', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), fc.constantFrom(...SERDE_NAMES), (bytes, serde) => {
      const payload = Buffer.from(bytes);
      const v = encodeValue({ v: FORMAT_VERSION, ns: 'n', serde, raw: payload.length, len: payload.length, sum: payloadChecksum(payload) }, payload);
      const d = decodeValue(v);
      expect(d.payload.equals(payload)).toBe(true);
      expect(d.header).toMatchObject({ ns: 'n', serde, sum: payloadChecksum(payload) });
    }));
  });

  it('manifests round-trip and check their segment count', () => {
    const segs = ['0123456789abcdef', 'fedcba9876543210', '0000000000000000'];
    const h = { v: FORMAT_VERSION, ns: 'n', serde: 'naive' as const, raw: 2500, len: 2500, seg: 1000, segs };
    expect(decodeValue(encodeValue(h)).header.segs).toEqual(segs);
    expect(segmentCount(2500, 1000)).toBe(3);
    expect(() => decodeValue(encodeValue({ ...h, len: 3001 }))).toThrow(CorruptValueError);
    // A header claiming a huge chunk is refused before anything is allocated for it.
    expect(() => decodeValue(encodeValue({ ...h, raw: 2 ** 40, len: 2 ** 40, seg: 2 ** 40, segs: ['0000000000000000'] }))).toThrow(/exceeds/);
    expect(() => decodeValue(encodeValue({ ...h, raw: 2499 }))).toThrow(/naive chunk/);
  });

  it('anything else is a CorruptValueError, never another exception', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const b = Buffer.from(bytes);
      try {
        decodeValue(b);
      } catch (e) {
        expect(e).toBeInstanceOf(CorruptValueError);
      }
    }));
    const good = encodeValue({ v: FORMAT_VERSION, ns: 'n', serde: 'naive', raw: 3, len: 3, sum: 'x' }, Buffer.from('abc'));
    expect(() => decodeValue(good.subarray(0, good.length - 1))).toThrow(CorruptValueError);
    const wrongVersion = Buffer.from(good);
    wrongVersion[3] = 9;
    expect(() => decodeValue(wrongVersion)).toThrow(CorruptValueError);
  });
});

describe('serde', () => {
  it('byte shuffle is its own inverse for odd and even lengths', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 1000 }), (bytes) => {
      expect(unshuffle2(shuffle2(bytes)).equals(Buffer.from(bytes))).toBe(true);
    }));
    expect([...shuffle2(Uint8Array.from([1, 2, 3, 4, 5]))]).toEqual([1, 3, 2, 4, 5]);
  });

  it.each(SERDE_NAMES)('%s round-trips and checks the raw length', async (serde) => {
    const raw = Buffer.alloc(100_000, 7);
    const enc = await encode(serde, raw);
    expect((await decode(serde, enc, raw.length)).equals(raw)).toBe(true);
    await expect(decode(serde, enc, raw.length + 1)).rejects.toBeInstanceOf(CorruptValueError);
  });

  it('lz4 garbage is a CorruptValueError, and a huge size prefix allocates nothing', async () => {
    await expect(decode('lz4', Buffer.from([255, 255, 255, 127, 1, 2, 3]), 10)).rejects.toThrow(/announces 2147483647 bytes/);
    await expect(decode('lz4', Buffer.from([10, 0, 0, 0, 0xff, 0xff, 0xff]), 10)).rejects.toBeInstanceOf(CorruptValueError);
    await expect(decode('lz4-shuffle', Buffer.from([1, 2]), 10)).rejects.toBeInstanceOf(CorruptValueError);
  });

  it('parseSerde names the allowed values', () => {
    expect(parseSerde('LZ4')).toBe('lz4');
    expect(() => parseSerde('zstd')).toThrow(/allowed: naive, lz4, lz4-shuffle/);
  });
});
