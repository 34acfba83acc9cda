/**
 * The tier contract against ValkeyTier on a real single valkey-server and a
 * real 3-master cluster, with each serde and with small segments (so that
 * segment edges are exercised by modest payloads).
 */

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Slab } from '../../src/tiers/host-memory.js';
import { ChunkId } from '../../src/tiers/chunk-id.js';
import { ValkeyTier } from '../../src/tiers/valkey-tier.js';
import { startValkey, startValkeyCluster, stopAllValkey, type ValkeyCluster, type ValkeyServer } from '../../bench/valkey-server.js';
import { randomChunkKey, runTierContract } from './tier-contract.js';

let single: ValkeyServer;
let cluster: ValkeyCluster;

beforeAll(async () => {
  [single, cluster] = await Promise.all([startValkey(), startValkeyCluster()]);
});
afterAll(async () => {
  await stopAllValkey();
});

const quiet = (): void => undefined;

for (const dataPath of ['native', 'glide'] as const) {
  describe(`valkey single (${dataPath} data path)`, () => {
    runTierContract(`valkey single, ${dataPath}, naive, 1 MiB segments`, () => ValkeyTier.create({ url: single.url, dataPath, log: quiet }));
    runTierContract(`valkey single, ${dataPath}, lz4, 256 KiB segments`, () =>
      ValkeyTier.create({ url: single.url, dataPath, serde: 'lz4', segmentBytes: 256 << 10, connections: 2, log: quiet }), { maxBytes: 3 << 20 });
    runTierContract(`valkey single, ${dataPath}, lz4-shuffle, ttl`, () =>
      ValkeyTier.create({ url: single.url, dataPath, serde: 'lz4-shuffle', ttlSecs: 600, log: quiet }), { maxBytes: 3 << 20 });
  });
}

for (const dataPath of ['native', 'glide'] as const) {
  describe(`valkey cluster (${dataPath} data path)`, () => {
    runTierContract(`valkey cluster, ${dataPath}, naive`, () => ValkeyTier.create({ url: cluster.url, dataPath, log: quiet }), {
      finally: (tier) => {
        const t = tier as ValkeyTier;
        const native = t.stats().native as { jobs: number; nodes: number } | null;
        expect(t.dataPath.path).toBe(dataPath);
        if (dataPath === 'native') {
          expect(t.dataPath.reason).toMatch(/connections to each of 3 cluster nodes/);
          expect(native!.jobs).toBeGreaterThan(0);
          // ~16 segmented chunks at random slots: more than one master took
          // some (valkey-slots.test.ts routes to each of the three on purpose).
          expect(native!.nodes).toBeGreaterThanOrEqual(2);
        } else {
          expect(native).toBeNull();
        }
      },
    });
  });
}

describe('valkey getInto (reads into caller slabs)', () => {
  function slabs(): { allocate: (n: number) => Slab | null; live: () => number } {
    let live = 0;
    return {
      allocate: (n) => {
        live++;
        let released = false;
        return {
          buf: Buffer.alloc(n),
          release: () => {
            if (released) throw new Error('slab released twice');
            released = true;
            live--;
          },
        };
      },
      live: () => live,
    };
  }

  it.each([['naive', 'native'], ['lz4', 'native'], ['naive', 'glide'], ['lz4', 'glide']] as const)('%s, %s data path: inline and segmented chunks land in the slab; misses release it', async (serde, dataPath) => {
    const tier = await ValkeyTier.create({ url: single.url, serde, dataPath, segmentBytes: 256 << 10, log: quiet });
    try {
      const pool = slabs();
      for (const size of [0, 1000, 256 << 10, (1 << 20) + 7]) {
        const k = randomChunkKey();
        const v = randomBytes(size);
        await tier.put(k, v);
        const slab = await tier.getInto(k, pool.allocate);
        expect(slab!.buf.equals(v)).toBe(true);
        slab!.release();
      }
      expect(await tier.getInto(randomChunkKey(), pool.allocate)).toBeNull();
      const k = randomChunkKey();
      await tier.put(k, randomBytes(1 << 20));
      // 16 bytes: a single byte could equal what is already there (1 in 256).
      await single.cli(['SETRANGE', `${tier.keyOf(k)}:s1`, '5', 'corrupted-bytes!']);
      expect(await tier.getInto(k, pool.allocate)).toBeNull();
      const gone = randomChunkKey();
      await tier.put(gone, randomBytes(1 << 20));
      await single.cli(['DEL', `${tier.keyOf(gone)}:s0`]);
      expect(await tier.getInto(gone, pool.allocate)).toBeNull();
      expect(pool.live()).toBe(0);
      const full = randomChunkKey();
      await tier.put(full, randomBytes(100));
      expect(await tier.getInto(full, () => null)).toBeNull();
    } finally {
      await tier.close();
    }
  });
});

describe('valkey values of another format version (a fleet upgraded from format 1)', () => {
  it.each(['native', 'glide'] as const)('%s data path: a format-1 chunk is a miss, its keys deleted', async (dataPath) => {
    const tier = await ValkeyTier.create({ url: single.url, dataPath, segmentBytes: 256 << 10, log: quiet });
    try {
      for (const size of [1000, (1 << 20) + 7]) {
        const k = randomChunkKey();
        await tier.put(k, randomBytes(size));
        // Format 1 differed in its checksum (xxh64) and in the magic's last byte.
        await single.cli(['SETRANGE', tier.keyOf(k), '3', '\x01']);
        expect(await tier.get(k), `${size} bytes`).toBeNull();
        // No manifest, no chunk. An unreadable manifest does not say how many
        // segments it had: those are left to eviction (or the next put).
        expect((await single.cli(['EXISTS', tier.keyOf(k)])).trim()).toBe('0');
      }
      expect(tier.stats().corrupt).toBe(2);
    } finally {
      await tier.close();
    }
  });
});

describe('valkey reads of a namespace not read before (a fresh daemon)', () => {
  it('one read learns the chunk shape; the reads waiting on it take one native job each', async () => {
    const writer = await ValkeyTier.create({ url: single.url, log: quiet });
    const reader = await ValkeyTier.create({ url: single.url, dataPath: 'native', log: quiet });
    try {
      const ns = randomBytes(16).toString('hex');
      const keys = Array.from({ length: 8 }, () => ChunkId.of(ns, randomBytes(32).toString('hex')));
      const values = keys.map(() => randomBytes(3 * (1 << 20) + 11));
      expect(await Promise.all(keys.map((k, i) => writer.put(k, values[i])))).toEqual(keys.map(() => true));
      const got = await Promise.all(keys.map((k) => reader.getInto(k, (n) => ({ buf: Buffer.alloc(n), release: () => undefined }))));
      got.forEach((slab, i) => expect(slab!.buf.equals(values[i])).toBe(true));
      // The first: its manifest, then its segments; each other: manifest and segments together.
      expect((reader.stats().native as { jobs: number }).jobs).toBe(keys.length + 1);
    } finally {
      await writer.close();
      await reader.close();
    }
  });
});

describe('valkey deleteNamespace (clear of one namespace)', () => {
  for (const which of ['single', 'cluster'] as const) {
    it(`removes a namespace's chunks and segments and nothing else (${which})`, async () => {
      const t = await ValkeyTier.create({ url: which === 'single' ? single.url : cluster.url, segmentBytes: 64 << 10, log: quiet });
      try {
        const ns = `delns-${which}-${Date.now()}`;
        const keys = Array.from({ length: 20 }, (_, i) => ChunkId.of(ns, `h${i}`));
        const kept = ChunkId.of(`${ns}x`, 'h0');
        for (const k of keys) expect(await t.put(k, randomBytes(k.hash === 'h0' ? 200 << 10 : 100))).toBe(true);
        expect(await t.put(kept, randomBytes(100))).toBe(true);
        expect(await t.deleteNamespace(ns)).toBe(20);
        expect(await t.contains(keys)).toEqual(keys.map(() => false));
        expect(await t.contains([kept])).toEqual([true]);
        expect(await t.deleteNamespace(ns)).toBe(0);
      } finally {
        await t.close();
      }
    });
  }
});
