/**
 * Block-form Store/Retrieve through the daemon: a worker's KV in real shm
 * files laid out as vLLM lays it out, registered over the socket, stored from
 * some block ids and retrieved into others, compared byte for byte; and
 * a Retrieve of chunks that arrive from Valkey while it copies.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeAvailable, type KvLayoutSpec } from '../../native/index.js';
import { packTokens } from '../../src/chunking/tokens.js';
import type { KvtierClient } from '../../src/protocol/client.js';
import { expectedChunk, flashAttn, flashInfer, mla, packed, type KvFixture, type Shape } from '../native/shm-fixture.js';
import { startTestDaemon, waitFor, type TestDaemon } from '../helpers/daemon.js';
import { startValkey, stopAllValkey } from '../../bench/valkey-server.js';

const shape: Shape = { layers: 3, numBlocks: 64, blockSize: 16, heads: 2, headDim: 32, elemBytes: 2, chunkTokens: 256 };
const B = shape.chunkTokens / shape.blockSize;
const u32 = (ids: number[]): Buffer => Buffer.from(Uint32Array.from(ids).buffer);
const tokens = (n: number, seed: number): Buffer => packTokens(Array.from({ length: n }, (_, i) => (i * 7919 + seed) % 128_000));
const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

function register(c: KvtierClient, spec: KvLayoutSpec) {
  return c.registerKv({
    regions: spec.regions.map((r) => ({ regionId: r.regionId, sizeBytes: r.sizeBytes, shmPath: r.shmPath })),
    planes: spec.planes,
    numBlocks: spec.numBlocks,
    blockSize: spec.blockSize,
  });
}

/** The bytes of blocks `ids` of every plane, in plane order: what a worker would compare. */
const blocks = (fx: KvFixture, ids: number[]): Buffer => expectedChunk(fx, fx.read(), ids);

function mappedPaths(files: string[]): string[] {
  const maps = readFileSync('/proc/self/maps', 'utf8');
  return files.filter((f) => maps.includes(f));
}

describe.skipIf(!nativeAvailable())('block-form store and retrieve', () => {
  let d: TestDaemon;
  beforeAll(async () => {
    d = await startTestDaemon({ max_local_cpu_size: 0.25 });
  });
  afterAll(async () => {
    await d.stop();
  });

  for (const [name, make] of [['flash-attn', flashAttn], ['flashinfer', flashInfer], ['mla', mla], ['all layers in one buffer', packed]] as const) {
    it(`${name}: stored from some blocks, retrieved into others, byte-exact`, async () => {
      const src = make(shape);
      const dst = make(shape);
      try {
        const a = await d.connect({ fingerprint: { model: `bf-${name}` } });
        const b = await d.connect({ fingerprint: { model: `bf-${name}` } });
        const ok = await register(a, src.spec);
        await register(b, dst.spec);
        expect(ok.chunkBytes).toBe(B * src.spec.planes.reduce((n, p) => n + p.blockBytes, 0));
        const t = tokens(3 * 256 + 100, 1);
        const srcIds = [...range(5, B), ...range(40, B), ...range(21, B)];
        const s = await a.store({ address: { tokens: t }, blockIds: u32(srcIds) });
        expect(s.copied.storedChunks).toBe(3);
        await s.committed;

        const l = await b.lookup({ tokens: t });
        expect(l.hitTokens).toBe(768);
        const dstIds = [...range(48, B), ...range(0, B), ...range(16, B)];
        const before = blocks(dst, range(32, 16));
        const r = await b.retrieve({ leaseId: l.leaseId, blockIds: u32(dstIds) });
        expect(r.loadedChunks).toBe(3);
        expect(r.failedBlockIds.length).toBe(0);
        expect(blocks(dst, dstIds).equals(blocks(src, srcIds))).toBe(true);
        expect(blocks(dst, range(32, 16)).equals(before)).toBe(true);
        await b.releaseLease(l.leaseId);
      } finally {
        src.cleanup();
        dst.cleanup();
      }
    });
  }

  it('skips blocks marked 0xFFFFFFFF and retrieves a sub-range of the lease', async () => {
    const src = flashAttn(shape);
    const dst = flashAttn(shape);
    try {
      const c = await d.connect({ fingerprint: { model: 'bf-skip' } });
      const w = await d.connect({ fingerprint: { model: 'bf-skip' } });
      await register(c, src.spec);
      await register(w, dst.spec);
      const t = tokens(512, 2);
      await (await c.store({ address: { tokens: t }, blockIds: u32(range(0, 2 * B)) })).committed;
      const l = await w.lookup({ tokens: t });
      const others = range(0, shape.numBlocks).filter((b) => b < 20 || b >= 20 + B - 2);
      const keep = blocks(dst, others);
      const ids = [...range(20, B - 2), 0xffffffff, 0xffffffff];
      const r = await w.retrieve({ leaseId: l.leaseId, firstChunk: 1, numChunks: 1, blockIds: u32(ids) });
      expect(r.loadedChunks).toBe(1);
      expect(blocks(dst, range(20, B - 2)).equals(blocks(src, range(B, B - 2)))).toBe(true);
      expect(blocks(dst, others).equals(keep)).toBe(true);
    } finally {
      src.cleanup();
      dst.cleanup();
    }
  });

  it('names bad block ids and layouts; nothing is copied', async () => {
    const fx = flashAttn(shape);
    try {
      const c = await d.connect({ fingerprint: { model: 'bf-bad' } });
      await register(c, fx.spec);
      const t = tokens(256, 3);
      await expect(c.store({ address: { tokens: t }, blockIds: u32([...range(0, B - 1), shape.numBlocks]) })).rejects.toMatchObject({ code: 'KVT_BAD_BLOCK_ID' });
      await expect(c.store({ address: { tokens: t }, blockIds: u32([...range(0, B - 1), 0]) })).rejects.toMatchObject({ code: 'KVT_BAD_BLOCK_ID' });
      expect((await c.lookup({ tokens: t }, { noLease: true })).hitChunks).toBe(0);
      await (await c.store({ address: { tokens: t }, blockIds: u32(range(0, B)) })).committed;
      const l = await c.lookup({ tokens: t });
      await expect(c.retrieve({ leaseId: l.leaseId, blockIds: u32(range(0, B - 1)) })).rejects.toMatchObject({ code: 'KVT_BAD_BLOCK_ID' });
      const overrun = { ...fx.spec, planes: fx.spec.planes.map((p, i) => (i === 1 ? { ...p, blockStride: p.blockStride * 2 } : p)) };
      await expect(register(c, overrun)).rejects.toMatchObject({ code: 'KVT_BAD_LAYOUT' });
      await expect(register(c, { ...fx.spec, regions: fx.spec.regions.map((r) => ({ ...r, shmPath: '/dev/shm/kvtier-does-not-exist' })) })).rejects.toMatchObject({ code: 'KVT_REGION_UNAVAILABLE' });
      const fresh = await d.connect({ fingerprint: { model: 'bf-bad' } });
      await expect(fresh.store({ address: { tokens: t }, blockIds: u32(range(0, B)) })).rejects.toMatchObject({ code: 'KVT_NOT_REGISTERED' });
    } finally {
      fx.cleanup();
    }
  });

  it('a client killed mid-transfer: its regions are unmapped and its pins released', async () => {
    const fx = flashAttn({ ...shape, numBlocks: 512, heads: 8, headDim: 128 });
    try {
      const c = await d.connect({ fingerprint: { model: 'bf-kill' } });
      await register(c, fx.spec);
      expect(mappedPaths(fx.files).length).toBe(fx.files.length);
      const t = tokens(8 * 256, 4);
      await (await c.store({ address: { tokens: t }, blockIds: u32(range(0, 8 * B)) })).committed;
      const pinnedBefore = d.daemon.stats().host.pinnedEntries;
      const leasesBefore = d.daemon.stats().leases;
      const l = await c.lookup({ tokens: t });
      expect(d.daemon.stats().host.pinnedEntries).toBe(pinnedBefore + 8);
      void c.retrieve({ leaseId: l.leaseId, blockIds: u32(range(256, 8 * B)) }).catch(() => {});
      void c.store({ address: { tokens: tokens(8 * 256, 5) }, blockIds: u32(range(128, 8 * B)) }).catch(() => {});
      c.destroy();
      await waitFor(() => mappedPaths(fx.files).length === 0, 'regions unmapped');
      await waitFor(() => d.daemon.stats().host.pinnedEntries === pinnedBefore && d.daemon.stats().leases === leasesBefore, 'pins released');
    } finally {
      fx.cleanup();
    }
  });

  it('Unregister while copies are in flight: the copies settle, then the regions go', async () => {
    const fx = flashAttn({ ...shape, numBlocks: 512, heads: 8, headDim: 128 });
    try {
      const c = await d.connect({ fingerprint: { model: 'bf-unreg' } });
      await register(c, fx.spec);
      const stores = [0, 1, 2].map((i) => c.store({ address: { tokens: tokens(4 * 256, 10 + i) }, blockIds: u32(range(i * 64, 4 * B)) }));
      const unregistered = c.unregister();
      const results = await Promise.allSettled(stores);
      await unregistered;
      for (const r of results) {
        if (r.status === 'rejected') expect((r.reason as { code: string }).code).toMatch(/KVT_REGION_UNAVAILABLE|KVT_NOT_REGISTERED/);
      }
      // The last reference to a mapping goes with the copy thread's job, just after its promise settles.
      await waitFor(() => mappedPaths(fx.files).length === 0, 'regions unmapped after Unregister');
      await expect(c.store({ address: { tokens: tokens(256, 20) }, blockIds: u32(range(0, B)) })).rejects.toMatchObject({ code: 'KVT_NOT_REGISTERED' });
    } finally {
      fx.cleanup();
    }
  });

  it('a region file truncated after registration: the store fails with a coded error, the daemon lives', async () => {
    const fx = flashAttn(shape);
    try {
      const c = await d.connect({ fingerprint: { model: 'bf-trunc' } });
      await register(c, fx.spec);
      const { truncateSync } = await import('node:fs');
      truncateSync(fx.files[1], 100);
      await expect(c.store({ address: { tokens: tokens(256, 30) }, blockIds: u32(range(0, B)) })).rejects.toMatchObject({ code: 'KVT_REGION_UNAVAILABLE' });
      expect((await c.lookup({ tokens: tokens(256, 30) }, { noLease: true })).hitChunks).toBe(0);
      await c.ping();
    } finally {
      fx.cleanup();
    }
  });
});

describe.skipIf(!nativeAvailable())('block-form retrieve of chunks fetched from Valkey', () => {
  // 3 MiB chunks: three segments each, on the native data path.
  const big: Shape = { ...shape, numBlocks: 128, heads: 8, headDim: 128 };
  let a: TestDaemon;
  let b: TestDaemon;
  let valkey: Awaited<ReturnType<typeof startValkey>>;
  beforeAll(async () => {
    valkey = await startValkey();
    a = await startTestDaemon({ remote_url: valkey.url });
    b = await startTestDaemon({ remote_url: valkey.url });
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await stopAllValkey();
  });

  it('each chunk lands in its blocks as its fetch settles; a chunk whose segment is gone fails only its own blocks', async () => {
    const src = flashAttn(big);
    const dst = flashAttn(big);
    try {
      const ca = await a.connect({ fingerprint: { model: 'bf-valkey' } });
      const cb = await b.connect({ fingerprint: { model: 'bf-valkey' } });
      await register(ca, src.spec);
      await register(cb, dst.spec);
      const n = 6;
      const t = tokens(n * 256, 40);
      const srcIds = range(0, n * B);
      const s = await ca.store({ address: { tokens: t }, blockIds: u32(srcIds) });
      expect(await s.committed).toMatchObject({ committedChunks: n });
      // One segment of one chunk evicted behind kvtier's back.
      const segment = (await valkey.cli(['KEYS', '*:s1'])).trim().split('\n')[0];
      expect(segment).toMatch(/:s1$/);
      await valkey.cli(['DEL', segment]);

      const l = await cb.lookup({ tokens: t });
      expect(l.valkeyChunks).toBe(n);
      const dstIds = range(big.numBlocks - n * B, n * B).reverse();
      const ofChunk = (ids: number[], j: number): number[] => ids.slice(j * B, (j + 1) * B);
      const before = Array.from({ length: n }, (_, j) => blocks(dst, ofChunk(dstIds, j)));
      const r = await cb.retrieve({ leaseId: l.leaseId, blockIds: u32(dstIds) });
      expect(r.loadedChunks).toBe(n - 1);
      const ids = r.failedBlockIds;
      const failed = [...new Uint32Array(ids.buffer.slice(ids.byteOffset, ids.byteOffset + ids.byteLength))];
      expect(failed.length).toBe(B);
      const bad = dstIds.indexOf(failed[0]) / B;
      expect(Number.isInteger(bad)).toBe(true);
      expect(new Set(failed)).toEqual(new Set(ofChunk(dstIds, bad)));
      for (let j = 0; j < n; j++) {
        // The failed chunk's blocks are left as they were, for the worker to recompute.
        const want = j === bad ? before[j] : blocks(src, ofChunk(srcIds, j));
        expect(blocks(dst, ofChunk(dstIds, j)).equals(want)).toBe(true);
      }
      await cb.releaseLease(l.leaseId);
    } finally {
      src.cleanup();
      dst.cleanup();
    }
  });
});
