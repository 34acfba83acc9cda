import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { canonicalChain, canonicalFingerprint, makeNamespace, rankNamespace, type NamespaceFingerprint } from '../../src/chunking/namespace.js';
import { hashKeys, hashTokenChunks, hashHex, chunkCount, seededRoot } from '../../src/chunking/prefix-hash.js';
import { chainHashes, chainMemoStats, nativeAvailable, setChainMemo } from '../../native/index.js';
import { packTokens, unpackTokens } from '../../src/chunking/tokens.js';

interface RawFingerprint {
  model: string; dtype: string; kv_layout: string; chunk_size: number; block_size: number;
  tp_rank: number; tp_size: number; pp_rank: number; pp_size: number; mla: boolean; cache_salt: string;
}
interface Vectors {
  token_cases: Array<{ name: string; fingerprint: RawFingerprint; save_unfull_chunk: boolean; tokens: number[];
    canonical_fingerprint: string; canonical_chain: string; root: string; namespace_id: string; chunk_hashes: string[] }>;
  rank_cases: Array<{ name: string; fingerprint: RawFingerprint; tokens: number[]; root: string; chunk_hashes: string[];
    ranks: Array<{ tp_rank: number; pp_rank: number; namespace_id: string }> }>;
  key_cases: Array<{ fingerprint: RawFingerprint; keys_hex: string[]; key_hashes: string[] }>;
  seeded_cases: Array<{ name: string; fingerprint: RawFingerprint; seed_hex: string; seeded_root: string; tokens: number[];
    chunk_hashes: string[]; keys_hex: string[]; key_hashes: string[] }>;
}

const vectors = JSON.parse(readFileSync(new URL('../vectors/prefix-hash.json', import.meta.url), 'utf8')) as Vectors;

function fingerprint(raw: RawFingerprint): NamespaceFingerprint {
  return {
    model: raw.model, dtype: raw.dtype, kvLayout: raw.kv_layout, chunkSize: raw.chunk_size,
    blockSize: raw.block_size, tpRank: raw.tp_rank, tpSize: raw.tp_size, ppRank: raw.pp_rank,
    ppSize: raw.pp_size, mla: raw.mla, cacheSalt: raw.cache_salt,
  };
}

describe('prefix hash chain matches the committed vectors', () => {
  for (const c of vectors.token_cases) {
    it(c.name, () => {
      const ns = makeNamespace(fingerprint(c.fingerprint));
      expect(canonicalFingerprint(ns.fingerprint).toString('utf8')).toBe(c.canonical_fingerprint);
      expect(canonicalChain(ns.fingerprint).toString('utf8')).toBe(c.canonical_chain);
      expect(ns.root.toString('hex')).toBe(c.root);
      expect(ns.id).toBe(c.namespace_id);
      // The JavaScript chain, and the native one where the addon is built.
      for (const chain of nativeAvailable() ? [null, chainHashes] : [null]) {
        const { hashes, count } = hashTokenChunks(ns.root, packTokens(c.tokens), c.fingerprint.chunk_size, c.save_unfull_chunk, undefined, chain);
        expect(count).toBe(c.chunk_hashes.length);
        expect(Array.from({ length: count }, (_, i) => hashHex(hashes, i))).toEqual(c.chunk_hashes);
      }
    });
  }
  it('opaque keys', () => {
    for (const c of vectors.key_cases) {
      const ns = makeNamespace(fingerprint(c.fingerprint));
      const out = hashKeys(ns.root, c.keys_hex.map((k) => Buffer.from(k, 'hex')));
      expect(c.key_hashes.map((_, i) => hashHex(out, i))).toEqual(c.key_hashes);
    }
  });
});

describe('every rank of an engine shares one chain and has its own namespace id (hash version 2)', () => {
  for (const c of vectors.rank_cases) {
    it(c.name, () => {
      const first = makeNamespace(fingerprint(c.fingerprint));
      const { hashes, count } = hashTokenChunks(first.root, packTokens(c.tokens), c.fingerprint.chunk_size, false);
      expect(Array.from({ length: count }, (_, i) => hashHex(hashes, i))).toEqual(c.chunk_hashes);
      for (const r of c.ranks) {
        const ns = rankNamespace(first, r.tp_rank, r.pp_rank);
        expect(ns.root.toString('hex')).toBe(c.root);
        expect(ns.id).toBe(r.namespace_id);
        expect(makeNamespace({ ...fingerprint(c.fingerprint), tpRank: r.tp_rank, ppRank: r.pp_rank }).id).toBe(r.namespace_id);
      }
      expect(new Set(c.ranks.map((r) => r.namespace_id)).size).toBe(c.ranks.length);
    });
  }
});

describe('a per-request seed (ChunkAddress.seed) matches the committed vectors', () => {
  for (const c of vectors.seeded_cases) {
    it(c.name, () => {
      const ns = makeNamespace(fingerprint(c.fingerprint));
      const root = seededRoot(ns.root, Buffer.from(c.seed_hex, 'hex'));
      expect(root.toString('hex')).toBe(c.seeded_root);
      for (const chain of nativeAvailable() ? [null, chainHashes] : [null]) {
        const { hashes, count } = hashTokenChunks(root, packTokens(c.tokens), c.fingerprint.chunk_size, false, undefined, chain);
        expect(Array.from({ length: count }, (_, i) => hashHex(hashes, i))).toEqual(c.chunk_hashes);
      }
      const keyed = hashKeys(root, c.keys_hex.map((k) => Buffer.from(k, 'hex')));
      expect(c.key_hashes.map((_, i) => hashHex(keyed, i))).toEqual(c.key_hashes);
    });
  }
  it('no seed and an empty seed are the namespace root', () => {
    const ns = makeNamespace(fingerprint(vectors.token_cases[0].fingerprint));
    expect(seededRoot(ns.root, undefined)).toBe(ns.root);
    expect(seededRoot(ns.root, new Uint8Array(0))).toBe(ns.root);
  });
});

describe('prefix hash chain properties', () => {
  const fp = fingerprint(vectors.token_cases[0].fingerprint);
  const small = { ...fp, chunkSize: 16 };
  it('chunk i depends on every token before it and on nothing after it', () => {
    const root = makeNamespace(small).root;
    fc.assert(fc.property(fc.array(fc.nat({ max: 0xffffffff }), { minLength: 48, maxLength: 96 }), fc.nat(), (tokens, pick) => {
      const base = hashTokenChunks(root, packTokens(tokens), 16, false);
      const pos = pick % tokens.length;
      const changed = tokens.slice();
      changed[pos] = (changed[pos] + 1) >>> 0;
      const other = hashTokenChunks(root, packTokens(changed), 16, false);
      const touched = Math.floor(pos / 16);
      for (let i = 0; i < base.count; i++) {
        expect(hashHex(other.hashes, i) === hashHex(base.hashes, i)).toBe(i < touched);
      }
    }), { numRuns: 200 });
  });
  it('different namespaces never share a chunk hash', () => {
    const tokens = packTokens(Array.from({ length: 64 }, (_, i) => i));
    const a = hashTokenChunks(makeNamespace(small).root, tokens, 16, false);
    const b = hashTokenChunks(makeNamespace({ ...small, cacheSalt: 'tenant-b' }).root, tokens, 16, false);
    const c = hashTokenChunks(makeNamespace({ ...small, dtype: 'float16' }).root, tokens, 16, false);
    for (let i = 0; i < 4; i++) {
      expect(hashHex(a.hashes, i)).not.toBe(hashHex(b.hashes, i));
      expect(hashHex(a.hashes, i)).not.toBe(hashHex(c.hashes, i));
    }
  });
  it('the native chain equals the JavaScript chain across batch edges and early stops', () => {
    if (!nativeAvailable()) {
      console.log('native addon not built: only the JavaScript chain is checked');
      return;
    }
    const root = makeNamespace(small).root;
    fc.assert(fc.property(fc.array(fc.nat({ max: 0xffffffff }), { maxLength: 16 * 70 }), fc.boolean(), fc.nat(80), (tokens, partial, stopAt) => {
      const packed = packTokens(tokens);
      const stop = (i: number): boolean => i === stopAt;
      const js = hashTokenChunks(root, packed, 16, partial, stop, null);
      const native = hashTokenChunks(root, packed, 16, partial, stop, chainHashes);
      expect(native.count).toBe(js.count);
      expect(native.hashes.equals(js.hashes)).toBe(true);
    }), { numRuns: 100 });
  });
  describe.skipIf(!nativeAvailable())('the native chain memo (a step found by parent hash and every token byte)', () => {
    const root = makeNamespace(small).root;
    const chained = (tokens: number[], partial = true): Buffer => hashTokenChunks(root, packTokens(tokens), 16, partial, undefined, chainHashes).hashes;
    const reference = (tokens: number[], partial = true): Buffer => hashTokenChunks(root, packTokens(tokens), 16, partial, undefined, null).hashes;
    afterEach(() => setChainMemo(32 << 20));

    it('answers a prompt hashed before from the memo, with the same hashes', () => {
      const tokens = Array.from({ length: 16 * 40 + 5 }, (_, i) => (i * 2654435761) >>> 0);
      const first = chained(tokens);
      const before = chainMemoStats();
      const again = chained(tokens);
      const after = chainMemoStats();
      expect(again.equals(first)).toBe(true);
      expect(again.equals(reference(tokens))).toBe(true);
      expect(after.hits - before.hits).toBe(41);
      expect(after.misses - before.misses).toBe(0);
    });
    it('never answers a changed token, a changed parent or a shorter chunk from a step of another', () => {
      // Prompts that share prefixes and differ by one token, one chunk of
      // another root, or a shorter last chunk: each hashed after the others
      // filled the memo must still equal the JavaScript chain.
      fc.assert(fc.property(fc.array(fc.nat({ max: 50 }), { minLength: 16, maxLength: 16 * 12 }), fc.nat(), fc.nat(15), (tokens, pick, cut) => {
        const pos = pick % tokens.length;
        const changed = tokens.slice();
        changed[pos] = (changed[pos] + 1) >>> 0;
        const shorter = tokens.slice(0, Math.max(1, tokens.length - cut));
        for (const t of [tokens, changed, shorter, tokens, changed]) expect(chained(t).equals(reference(t))).toBe(true);
        const salted = makeNamespace({ ...small, cacheSalt: 'tenant-b' }).root;
        const other = hashTokenChunks(salted, packTokens(tokens), 16, true, undefined, chainHashes).hashes;
        expect(other.equals(hashTokenChunks(salted, packTokens(tokens), 16, true, undefined, null).hashes)).toBe(true);
        expect(other.subarray(0, 32).equals(chained(tokens).subarray(0, 32))).toBe(false);
      }), { numRuns: 150 });
    });
    it('a full memo replaces steps and stays right; off (0), every step is hashed', () => {
      setChainMemo(64 * 192); // the smallest table: 64 slots of 72 + 64 bytes, rounded to 192
      const prompts = Array.from({ length: 20 }, (_, p) => Array.from({ length: 16 * 20 }, (_, i) => (p * 7919 + i) >>> 0));
      for (let round = 0; round < 2; round++) for (const t of prompts) expect(chained(t, false).equals(reference(t, false))).toBe(true);
      expect(chainMemoStats().slots).toBe(64);
      setChainMemo(0);
      const before = chainMemoStats();
      for (const t of prompts) expect(chained(t, false).equals(reference(t, false))).toBe(true);
      expect(chainMemoStats().hits).toBe(before.hits);
      expect(chainMemoStats().bytes).toBe(0);
    });
    it('a larger chunk size gets a table of its own, and the smaller one then fits in it', () => {
      const tokens = Array.from({ length: 64 * 5 }, (_, i) => i);
      chained(tokens);
      expect(chainMemoStats().slots).toBe(131072); // 32 MiB of 72 + 64 bytes, rounded to 192: 174762, down to a power of two
      const big = hashTokenChunks(root, packTokens(tokens), 64, false, undefined, chainHashes).hashes;
      expect(chainMemoStats().slots).toBe(65536); // 72 + 256 bytes, rounded to 384
      expect(big.equals(hashTokenChunks(root, packTokens(tokens), 64, false, undefined, null).hashes)).toBe(true);
      const before = chainMemoStats().hits;
      expect(hashTokenChunks(root, packTokens(tokens), 64, false, undefined, chainHashes).hashes.equals(big)).toBe(true);
      expect(chainMemoStats().hits - before).toBe(5);
      expect(hashTokenChunks(root, packTokens(tokens), 16, false, undefined, chainHashes).hashes.equals(reference(tokens, false))).toBe(true);
      expect(chainMemoStats().slots).toBe(65536);
    });
    it('with one slot, every step meets the one before it there and is still told apart', () => {
      // One slot (192 bytes for 16-token chunks): each step below lands in
      // the slot the previous one filled, so only the byte comparisons stand
      // between it and the previous step's hash.
      setChainMemo(192);
      const step = (prev: Buffer, tokens: Buffer): Buffer => {
        const out = Buffer.alloc(32);
        chainHashes(prev, tokens, 64, 1, out);
        return out;
      };
      const sha = (b: Buffer): Buffer => createHash('sha256').update(b).digest();
      const expected = (prev: Buffer, tokens: Buffer): Buffer => sha(Buffer.concat([prev, sha(tokens)]));
      const flip = (b: Buffer, i: number): Buffer => {
        const c = Buffer.from(b);
        c[i] ^= 1;
        return c;
      };
      const a = Buffer.from(root.subarray(0, 32));
      const t = packTokens(Array.from({ length: 16 }, (_, i) => 1000 + i));
      const steps: Array<[Buffer, Buffer]> = [
        [a, t], [a, t], // the same step twice: a hit
        [flip(a, 31), t], [flip(a, 0), t], [a, t], // parents that differ in one byte
        [a, flip(t, 63)], [a, flip(t, 0)], [a, t], // tokens that differ in their last or first byte
        [a, t.subarray(0, 60)], [a, t], [a, t.subarray(0, 4)], // a partial chunk that is a prefix of the full one
      ];
      let hits = 0;
      for (const [prev, tokens] of steps) {
        const before = chainMemoStats().hits;
        expect(step(prev, tokens).equals(expected(prev, tokens))).toBe(true);
        hits += chainMemoStats().hits - before;
      }
      expect(chainMemoStats().slots).toBe(1);
      expect(hits).toBe(1);
    });
    it('refuses output that overlaps the tokens', () => {
      const buf = Buffer.alloc(256);
      expect(() => chainHashes(Buffer.alloc(32), buf.subarray(0, 128), 64, 2, buf.subarray(64, 128))).toThrow(/overlap/);
    });
  });
  it.skipIf(!nativeAvailable())('the native chain refuses out-of-bounds arguments', () => {
    const out = Buffer.alloc(64);
    expect(() => chainHashes(Buffer.alloc(31), Buffer.alloc(128), 64, 2, out)).toThrow(/32 bytes/);
    expect(() => chainHashes(Buffer.alloc(32), Buffer.alloc(64), 64, 2, out)).toThrow(/fit/);
    expect(() => chainHashes(Buffer.alloc(32), Buffer.alloc(128), 64, 3, out)).toThrow(/fit/);
    expect(() => chainHashes(Buffer.alloc(32), Buffer.alloc(128), 0, 1, out)).toThrow(/chunkBytes/);
  });
  it('stops early when asked', () => {
    const root = makeNamespace(small).root;
    const r = hashTokenChunks(root, packTokens(Array.from({ length: 160 }, (_, i) => i)), 16, false, (i) => i === 2);
    expect(r.count).toBe(3);
    expect(r.hashes.length).toBe(96);
  });
  it('chunkCount and token packing', () => {
    expect(chunkCount(1000, 256, false)).toBe(3);
    expect(chunkCount(1000, 256, true)).toBe(4);
    expect(chunkCount(1024, 256, true)).toBe(4);
    expect(unpackTokens(packTokens([1, 0xffffffff, 7]))).toEqual([1, 0xffffffff, 7]);
    expect(() => unpackTokens(Buffer.alloc(5))).toThrow(/multiple of 4/);
  });
  it('rejects a fingerprint value with a newline', () => {
    expect(() => makeNamespace({ ...small, model: 'a\nb' })).toThrow(/newline/);
  });
});
