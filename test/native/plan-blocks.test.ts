// The addon's copyBlocks expands segments from block ids in C++ (planBlocks);
// LayoutPlan.segments() is the TypeScript reference the segment-level copy()
// takes. For random layouts, ids, skip markers and runs of consecutive ids
// (which merge into one segment), both must move exactly the same bytes, in
// both directions, against real shm files.
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';

import { SKIP_BLOCK, addonPath, nativeAvailable } from '../../native/index.js';
import { LayoutPlan, type KvLayoutSpec } from '../../native/layout-plan.js';
import { shmPath } from './shm-fixture.js';

interface RawRegion {
  close(): void;
}
interface Raw {
  Region: new (path: string, size: number) => RawRegion;
  copy(scatter: boolean, regions: RawRegion[], buffers: Uint8Array[], segments: Float64Array): Promise<void>;
  copyBlocks(scatter: boolean, regions: RawRegion[], buffers: Uint8Array[], ids: Uint32Array[], planes: Float64Array, numBlocks: number): Promise<void>;
}

const raw = nativeAvailable() ? (createRequire(import.meta.url)(addonPath()) as Raw) : undefined;

const layoutArb = fc.record({
  numBlocks: fc.integer({ min: 2, max: 24 }),
  blocksPerChunk: fc.integer({ min: 1, max: 6 }),
  regions: fc.integer({ min: 1, max: 3 }),
  planes: fc.array(fc.record({ region: fc.nat(), blockBytes: fc.integer({ min: 1, max: 40 }).map((n) => n * 16 + (n % 3)), gap: fc.integer({ min: 0, max: 48 }), lead: fc.integer({ min: 0, max: 100 }) }), { minLength: 1, maxLength: 5 }),
  seed: fc.nat(),
});

describe.skipIf(raw === undefined)('copyBlocks (C++ expansion) moves the bytes copy(segments()) moves', () => {
  test('gather and scatter, random layouts and jobs', async () => {
    await fc.assert(
      fc.asyncProperty(layoutArb, fc.boolean(), async (l, scatter) => {
        // Planes laid out one after another in their region, each with its own stride and lead.
        const ends = new Array<number>(l.regions).fill(0);
        const planes = l.planes.map((p) => {
          const region = p.region % l.regions;
          const offset = ends[region] + p.lead;
          const blockStride = p.blockBytes + p.gap;
          ends[region] = offset + (l.numBlocks - 1) * blockStride + p.blockBytes;
          return { layer: 0, regionId: region, offset, blockStride, blockBytes: p.blockBytes };
        });
        const sizes = ends.map((e) => Math.max(e, 1));
        const spec: KvLayoutSpec = { regions: sizes.map((size, i) => ({ regionId: i, sizeBytes: size, shmPath: 'x' })), planes, numBlocks: l.numBlocks, blockSize: 1, chunkTokens: l.blocksPerChunk };
        const plan = new LayoutPlan(spec);
        // Jobs: distinct ids, consecutive runs more often than chance, skips in scatter.
        let next = l.seed % l.numBlocks;
        const pool = Array.from({ length: l.numBlocks }, (_, i) => (next + (i % 3 === 0 ? 5 * i : i)) % l.numBlocks);
        const order = [...new Set(pool)];
        for (let i = 0; i < l.numBlocks; i++) if (!order.includes(i)) order.push(i);
        const jobs: { blockIds: Uint32Array; buf: Uint8Array }[] = [];
        while (order.length > 0 && jobs.length < 3) {
          const n = Math.min(order.length, 1 + ((next += 7) % l.blocksPerChunk));
          const ids = Uint32Array.from(order.splice(0, n));
          if (scatter && ids.length > 1 && next % 2 === 0) ids[next % ids.length] = SKIP_BLOCK;
          jobs.push({ blockIds: ids, buf: new Uint8Array(plan.bytesFor(ids.length)) });
        }
        const content = sizes.map((s) => randomBytes(s));
        const files = [0, 1].map(() => sizes.map(() => shmPath('planblocks')));
        files.forEach((set) => set.forEach((f, i) => writeFileSync(f, content[i])));
        const regions = files.map((set) => set.map((f, i) => new raw!.Region(f, sizes[i])));
        try {
          const bufA = jobs.map((j) => (scatter ? Uint8Array.from(randomBytes(j.buf.length)) : new Uint8Array(j.buf.length)));
          const bufB = bufA.map((b) => Uint8Array.from(b));
          await raw!.copy(scatter, regions[0], bufA, Float64Array.from(plan.segments(jobs.map((j, i) => ({ ...j, buf: bufA[i] })), scatter)));
          await raw!.copyBlocks(scatter, regions[1], bufB, jobs.map((j) => j.blockIds), plan.planeTable, plan.numBlocks);
          if (scatter) files[0].forEach((f, i) => expect(readFileSync(files[1][i]).equals(readFileSync(f))).toBe(true));
          else bufA.forEach((b, i) => expect(Buffer.from(bufB[i]).equals(Buffer.from(b))).toBe(true));
        } finally {
          regions.flat().forEach((r) => r.close());
          files.flat().forEach((f) => rmSync(f, { force: true }));
        }
      }),
      { numRuns: 60 },
    );
  });

  test('bad ids, short buffers and planes past their region are refused by the addon itself', async () => {
    const f = shmPath('planblocks-bad');
    writeFileSync(f, randomBytes(4096));
    const region = new raw!.Region(f, 4096);
    const planes = Float64Array.from([0, 0, 512, 512]); // 8 blocks of 512 bytes
    const bad = (p: Promise<void>): Promise<unknown> => p.then(() => { throw new Error('accepted'); }, (e: { code?: string }) => e.code);
    try {
      expect(await bad(raw!.copyBlocks(false, [region], [new Uint8Array(512)], [Uint32Array.from([8])], planes, 8))).toBe('KVT_BAD_BLOCK_ID');
      expect(await bad(raw!.copyBlocks(false, [region], [new Uint8Array(512)], [Uint32Array.from([SKIP_BLOCK])], planes, 8))).toBe('KVT_BAD_BLOCK_ID');
      expect(await bad(raw!.copyBlocks(false, [region], [new Uint8Array(511)], [Uint32Array.from([1])], planes, 8))).toBe('KVT_BAD_BLOCK_ID');
      expect(await bad(raw!.copyBlocks(false, [region], [new Uint8Array(512)], [Uint32Array.from([1])], planes, 9))).toBe('KVT_BAD_LAYOUT');
      expect(await bad(raw!.copyBlocks(false, [region], [new Uint8Array(512)], [Uint32Array.from([1])], Float64Array.from([0, 1, 512, 512]), 8))).toBe('KVT_BAD_LAYOUT');
      expect(await bad(raw!.copyBlocks(false, [region], [new Uint8Array(512)], [Uint32Array.from([1])], Float64Array.from([1, 0, 512, 512]), 8))).toBe('KVT_BAD_LAYOUT');
      expect(await bad(raw!.copyBlocks(false, [region], [new Uint8Array(512)], [Uint32Array.from([1])], Float64Array.from([0, 0, 2 ** 52, 512]), 8))).toBe('KVT_BAD_LAYOUT');
      await raw!.copyBlocks(false, [region], [new Uint8Array(512)], [Uint32Array.from([7])], planes, 8); // the last block is fine
    } finally {
      region.close();
      rmSync(f, { force: true });
    }
  });
});
