// The addon expands copies from block ids itself (copyBlocks; planBlocks in
// native/src/copy.cc). Against real shm files: for random layouts, ids, skip
// markers and runs of consecutive ids, gather and scatter move exactly the
// bytes a plain model of the layout says (each plane's block b at
// offset + b*stride of its region, a job's buffer plane by plane), and runs
// contiguous on both sides become one segment.
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
  Region: new (path: string, size: number, shmDir: string, ownerUid: number) => RawRegion;
  copyBlocks(scatter: boolean, regions: RawRegion[], buffers: Uint8Array[], ids: Uint32Array[], planes: Float64Array, numBlocks: number): Promise<void>;
  __testing: { segments(scatter: boolean, regions: RawRegion[], buffers: Uint8Array[], ids: Uint32Array[], planes: Float64Array, numBlocks: number): Float64Array };
}

const raw = nativeAvailable() ? (createRequire(import.meta.url)(addonPath()) as Raw) : undefined;
if (raw === undefined) console.log('plan-blocks.test.ts skipped: the native addon is not built (npm run build:native)');

/** Real shm regions with the given contents, closed and removed by the returned function. */
function shmRegions(contents: Buffer[]): { regions: RawRegion[]; files: string[]; done: () => void } {
  const files = contents.map(() => shmPath('planblocks'));
  files.forEach((f, i) => writeFileSync(f, contents[i]));
  const regions = files.map((f, i) => new raw!.Region(f, contents[i].length, '/dev/shm', process.getuid!()));
  return { regions, files, done: () => { regions.forEach((r) => r.close()); files.forEach((f) => rmSync(f, { force: true })); } };
}

const layoutArb = fc.record({
  numBlocks: fc.integer({ min: 2, max: 24 }),
  blocksPerChunk: fc.integer({ min: 1, max: 6 }),
  regions: fc.integer({ min: 1, max: 3 }),
  planes: fc.array(fc.record({ region: fc.nat(), blockBytes: fc.integer({ min: 1, max: 40 }).map((n) => n * 16 + (n % 3)), gap: fc.integer({ min: 0, max: 48 }), lead: fc.integer({ min: 0, max: 100 }) }), { minLength: 1, maxLength: 5 }),
  seed: fc.nat(),
});

describe.skipIf(raw === undefined)('copyBlocks', () => {
  test('gather and scatter move the bytes the layout model says, for random layouts and jobs', async () => {
    await fc.assert(
      fc.asyncProperty(layoutArb, fc.boolean(), async (l, scatter) => {
        // Planes one after another in their region, each with its own stride and lead.
        const ends = new Array<number>(l.regions).fill(0);
        const planes = l.planes.map((p) => {
          const regionId = p.region % l.regions;
          const offset = ends[regionId] + p.lead;
          const blockStride = p.blockBytes + p.gap;
          ends[regionId] = offset + (l.numBlocks - 1) * blockStride + p.blockBytes;
          return { layer: 0, regionId, offset, blockStride, blockBytes: p.blockBytes };
        });
        const sizes = ends.map((e) => Math.max(e, 1));
        const spec: KvLayoutSpec = { regions: sizes.map((size, i) => ({ regionId: i, sizeBytes: size, shmPath: 'x' })), planes, numBlocks: l.numBlocks, blockSize: 1, chunkTokens: l.blocksPerChunk };
        const plan = new LayoutPlan(spec);
        // Jobs: distinct ids, with consecutive runs more often than chance; skips in scatter.
        let next = l.seed % l.numBlocks;
        const order = [...new Set(Array.from({ length: l.numBlocks }, (_, i) => (next + (i % 3 === 0 ? 5 * i : i)) % l.numBlocks))];
        for (let i = 0; i < l.numBlocks; i++) if (!order.includes(i)) order.push(i);
        const ids: Uint32Array[] = [];
        while (order.length > 0 && ids.length < 3) {
          const job = Uint32Array.from(order.splice(0, Math.min(order.length, 1 + ((next += 7) % l.blocksPerChunk))));
          if (scatter && job.length > 1 && next % 2 === 0) job[next % job.length] = SKIP_BLOCK;
          ids.push(job);
        }
        const content = sizes.map((s) => randomBytes(s));
        const bufs = ids.map((job) => (scatter ? randomBytes(plan.bytesFor(job.length)) : Buffer.alloc(plan.bytesFor(job.length))));
        // The model: where each (job, plane, block) lives on both sides.
        const want = scatter ? content.map((c) => Buffer.from(c)) : bufs.map((b) => Buffer.from(b));
        ids.forEach((job, j) => {
          let base = 0;
          for (const p of planes) {
            job.forEach((id, k) => {
              if (id === SKIP_BLOCK) return;
              const r = p.offset + id * p.blockStride;
              const b = base + k * p.blockBytes;
              if (scatter) bufs[j].copy(want[p.regionId], r, b, b + p.blockBytes);
              else content[p.regionId].copy(want[j], b, r, r + p.blockBytes);
            });
            base += job.length * p.blockBytes;
          }
        });
        const shm = shmRegions(content);
        try {
          await raw!.copyBlocks(scatter, shm.regions, bufs, ids, plan.planeTable, plan.numBlocks);
          if (scatter) shm.files.forEach((f, i) => expect(readFileSync(f).equals(want[i])).toBe(true));
          else bufs.forEach((b, j) => expect(b.equals(want[j])).toBe(true));
        } finally {
          shm.done();
        }
      }),
      { numRuns: 60 },
    );
  });

  test('consecutive blocks with stride == bytes merge into one segment per plane', () => {
    const shm = shmRegions([Buffer.alloc(1000)]);
    try {
      const segs = raw!.__testing.segments(false, shm.regions, [new Uint8Array(40)], [Uint32Array.from([5, 6, 7, 20])], Float64Array.from([0, 0, 10, 10]), 100);
      expect([...segs]).toEqual([0, 50, 0, 0, 30, 0, 200, 0, 30, 10]);
    } finally {
      shm.done();
    }
  });

  test('interleaved planes never merge; skipped blocks leave holes in the buffer', () => {
    const shm = shmRegions([Buffer.alloc(2000)]);
    try {
      const planes = Float64Array.from([0, 0, 20, 10, 0, 10, 20, 10]);
      const segs = raw!.__testing.segments(true, shm.regions, [new Uint8Array(40)], [Uint32Array.from([SKIP_BLOCK, 3])], planes, 100);
      expect([...segs]).toEqual([0, 60, 0, 10, 10, 0, 70, 0, 30, 10]);
    } finally {
      shm.done();
    }
  });
});
