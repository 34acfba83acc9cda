/**
 * What only the native data path has to prove, against real valkey-servers:
 * a connection reset mid-transfer costs at most the chunks on that connection,
 * and reading many times the pool's size moves no memory into the process
 * (segment bytes land in the caller's slabs, nothing is buffered per chunk).
 */

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeAvailable } from '../../native/index.js';
import type { Slab } from '../../src/tiers/host-memory.js';
import { ValkeyTier } from '../../src/tiers/valkey-tier.js';
import type { NativeStats } from '../../src/tiers/valkey-native.js';
import { startValkey, stopAllValkey, type ValkeyServer } from '../../bench/valkey-server.js';
import { randomChunkKey } from './tier-contract.js';

const MiB = 1 << 20;
const quiet = (): void => undefined;

let server: ValkeyServer;
beforeAll(async () => {
  server = await startValkey();
});
afterAll(async () => {
  await stopAllValkey();
});

/** Server-side ids of the connections without a client name: the addon's (glide names its own 'kvtier'). */
async function nativeConnectionIds(): Promise<string[]> {
  const list = await server.cli(['CLIENT', 'LIST']);
  const ids: string[] = [];
  for (const line of list.split('\n')) {
    const f = new Map(line.trim().split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    if (f.has('id') && f.get('name') === '' && f.get('cmd') !== 'client|list') ids.push(f.get('id')!);
  }
  return ids;
}

describe.skipIf(!nativeAvailable())('native data path', () => {
  it('a connection killed mid-transfer costs at most the chunk on it (a part is retried once on a fresh connection); all bytes exact', async () => {
    const tier = await ValkeyTier.create({ url: server.url, dataPath: 'native', connections: 4, log: quiet });
    try {
      expect(tier.dataPath.path).toBe('native');
      const items = Array.from({ length: 8 }, () => ({ k: randomChunkKey('ns-reset'), v: randomBytes(4 * MiB + 3) }));
      for (const { k, v } of items) expect(await tier.put(k, v)).toBe(true);
      let ok = 0;
      let missed = 0;
      let wrong = 0;
      let stop = false;
      const reader = async (lane: number): Promise<void> => {
        for (let i = lane; !stop; i++) {
          const { k, v } = items[i % items.length];
          const got = await tier.get(k);
          if (got === null) missed++;
          else if (got.equals(v)) ok++;
          else wrong++;
        }
      };
      const readers = [0, 1, 2, 3].map(reader);
      await new Promise((r) => setTimeout(r, 300));
      const ids = await nativeConnectionIds();
      expect(ids.length).toBe(4);
      await server.cli(['CLIENT', 'KILL', 'ID', ids[0]]);
      await new Promise((r) => setTimeout(r, 300));
      await server.cli(['CLIENT', 'KILL', 'ID', ids[1]]);
      await new Promise((r) => setTimeout(r, 300));
      stop = true;
      await Promise.all(readers);
      if (process.env.KVTIER_TEST_LOG) console.log({ ok, missed, wrong });
      expect(wrong).toBe(0);
      // Each kill can cost the chunk whose part was on that connection, no more.
      expect(missed).toBeLessThanOrEqual(2);
      expect(ok).toBeGreaterThan(missed);
      expect(tier.available).toBe(true);
      // Both kills were seen: 4 first connections, then one fresh one per kill.
      expect((tier.stats().native as { reconnects: number }).reconnects).toBeGreaterThanOrEqual(6);
      for (const { k, v } of items) expect((await tier.get(k))!.equals(v)).toBe(true);
    } finally {
      await tier.close();
    }
  }, 30_000);

  it('reading 1 GiB through 16 reused 4 MiB slabs grows the process by less than 64 MiB', async () => {
    const tier = await ValkeyTier.create({ url: server.url, dataPath: 'native', connections: 4, log: quiet });
    try {
      const size = 4 * MiB;
      const items = Array.from({ length: 16 }, () => ({ k: randomChunkKey('ns-rss'), v: randomBytes(size) }));
      for (const { k, v } of items) expect(await tier.put(k, v)).toBe(true);
      const slabs = Array.from({ length: 4 }, () => Buffer.alloc(size, 1));
      const free = [...slabs];
      const allocate = (n: number): Slab | null => {
        const buf = n === size ? free.pop() : undefined;
        return buf ? { buf, release: () => free.push(buf) } : null;
      };
      const lane = async (lane: number, rounds: number): Promise<number> => {
        let hits = 0;
        for (let i = 0; i < rounds; i++) {
          const slab = await tier.getInto(items[(lane * 4 + i) % items.length].k, allocate);
          if (slab !== null) hits++;
          slab?.release();
        }
        return hits;
      };
      // Warm up (first connections, the namespace's shape), then measure.
      await Promise.all([0, 1, 2, 3].map((l) => lane(l, 4)));
      global.gc?.();
      const before = process.memoryUsage().rss;
      const hits = await Promise.all([0, 1, 2, 3].map((l) => lane(l, 64)));
      const grown = process.memoryUsage().rss - before;
      if (process.env.KVTIER_TEST_LOG) console.log({ grownMiB: grown / MiB });
      expect(hits.reduce((a, b) => a + b, 0)).toBe(256);
      expect(grown).toBeLessThan(64 * MiB);
      const last = await tier.getInto(items[3].k, allocate);
      expect(last!.buf.equals(items[3].v)).toBe(true);
      last!.release();
    } finally {
      await tier.close();
    }
  }, 60_000);
  it('counts where its time goes: parts run, connection busy time and queue waits grow with the reads, bounded by wall time', async () => {
    const tier = await ValkeyTier.create({ url: server.url, dataPath: 'native', connections: 2, log: quiet });
    try {
      const items = Array.from({ length: 6 }, () => ({ k: randomChunkKey('ns-busy'), v: randomBytes(3 * MiB) }));
      for (const { k, v } of items) expect(await tier.put(k, v)).toBe(true);
      const native = (): NativeStats => tier.stats().native as NativeStats;
      const a = native();
      const t0 = performance.now();
      // Six chunks at once over two connections: parts queue for a connection.
      const got = await Promise.all(items.map(({ k }) => tier.get(k)));
      const wall = performance.now() - t0;
      const b = native();
      got.forEach((g, i) => expect(g!.equals(items[i].v)).toBe(true));
      expect(b.connections).toBe(2);
      // At least one part per segment read (1 MiB segments: 3 per chunk), and the manifests.
      expect(b.parts - a.parts).toBeGreaterThanOrEqual(6 * 3);
      expect(b.busyMs - a.busyMs).toBeGreaterThan(0);
      // Busy time is per connection: never more than the connections times the wall time.
      expect(b.busyMs - a.busyMs).toBeLessThanOrEqual(2 * wall + 1);
      expect(b.waitMs - a.waitMs).toBeGreaterThan(0);
      expect(b.bytesIn - a.bytesIn).toBeGreaterThanOrEqual(6 * 3 * MiB);
    } finally {
      await tier.close();
    }
  });
});
