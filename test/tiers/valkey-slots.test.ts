/**
 * Cluster routing of the native data path on a real 3-master cluster: the
 * slot function against the server's CLUSTER KEYSLOT, chunks landing on the
 * master that owns their slot, and a slot migrated under a tier whose map is
 * then stale (MOVED: that chunk through glide, byte-exact, map refreshed,
 * the next job native on the new owner).
 */

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ValkeyTier } from '../../src/tiers/valkey-tier.js';
import type { NativeStats } from '../../src/tiers/valkey-native.js';
import { crc16, keyHashSlot, parseClusterSlots, splitAddress } from '../../src/tiers/valkey-slots.js';
import { startValkeyCluster, stopAllValkey, type ValkeyCluster } from '../../bench/valkey-server.js';
import { randomChunkKey } from './tier-contract.js';
import { clusterMasters, ownerOf, type Master } from './cluster-nodes.js';

let cluster: ValkeyCluster;

beforeAll(async () => {
  cluster = await startValkeyCluster();
});
afterAll(async () => {
  await stopAllValkey();
});

const quiet = (): void => undefined;

const masters = (): Promise<Master[]> => clusterMasters(cluster);

/** Moves `slot` with its keys from its owner to `to`, as valkey-cli --cluster reshard does. */
async function migrateSlot(slot: number, to: Master): Promise<void> {
  const from = ownerOf(await masters(), slot);
  expect(from.id).not.toBe(to.id);
  await to.node.cli(['CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', from.id]);
  await from.node.cli(['CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', to.id]);
  const keys = (await from.node.cli(['CLUSTER', 'GETKEYSINSLOT', String(slot), '1000'])).split('\n').filter((k) => k.length > 0);
  if (keys.length > 0) {
    const res = await from.node.cli(['MIGRATE', to.node.host, String(to.node.port), '', '0', '10000', 'KEYS', ...keys]);
    expect(res.trim()).toBe('OK');
  }
  for (const m of [to, from, ...cluster.nodes.filter((n) => n !== to.node && n !== from.node).map((node) => ({ node }))]) {
    await m.node.cli(['CLUSTER', 'SETSLOT', String(slot), 'NODE', to.id]);
  }
}

function nativeStats(tier: ValkeyTier): NativeStats {
  return tier.stats().native as NativeStats;
}

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('cluster slots', () => {
  it('crc16 is XMODEM (check value of "123456789" is 0x31c3)', () => {
    expect(crc16(Buffer.from('123456789'))).toBe(0x31c3);
  });

  it('parseClusterSlots: ranges per master; a master without a usable host serves nothing', () => {
    const map = parseClusterSlots([
      [0, 99, ['127.0.0.1', 7001, 'id-a'], ['127.0.0.1', 7004, 'id-r']],
      [100, 199, ['?', 7002, 'id-b']],
      [200, 16383, ['::1', 7003, 'id-c']],
      [16000, 16383, ['127.0.0.1', 7001, 'id-a']],
    ]);
    expect(map.nodes).toEqual(['127.0.0.1:7001', '[::1]:7003']);
    expect([map.owner[0], map.owner[99], map.owner[100], map.owner[199], map.owner[200], map.owner[15999], map.owner[16000]]).toEqual([0, 0, -1, -1, 1, 1, 0]);
    expect(splitAddress('[::1]:7003')).toEqual({ host: '::1', port: 7003 });
    expect(() => parseClusterSlots([[0, 16384, ['h', 1]]])).toThrow(/slot range/);
    expect(() => parseClusterSlots('nope')).toThrow(/expected an array/);
  });

  it('keyHashSlot agrees with the server\'s CLUSTER KEYSLOT, hash tags included', async () => {
    const chunk = `kvtier:{ns-a:${randomBytes(32).toString('hex')}}`;
    const keys = [
      'foo', 'bar', '123456789', '{user1000}.following', '{user1000}.followers', 'foo{}{bar}', 'foo{{bar}}zap',
      'foo{bar}{zap}', '{}', 'a{', 'a}b{c', 'x{y}', chunk, `${chunk}:s0`, `${chunk}:s17`, 'ünïcödé{tag}',
    ];
    const server = await Promise.all(keys.map((k) => cluster.nodes[0].cli(['CLUSTER', 'KEYSLOT', k])));
    expect(keys.map((k) => keyHashSlot(k))).toEqual(server.map((s) => Number(s.trim())));
    expect(keyHashSlot(`${chunk}:s3`)).toBe(keyHashSlot(chunk));
  });

  it('each chunk is written to the master owning its slot, one native link per master', async () => {
    const tier = await ValkeyTier.create({ url: cluster.url, dataPath: 'native', segmentBytes: 64 << 10, log: quiet });
    try {
      expect(tier.dataPath).toEqual({ path: 'native', reason: 'addon I/O threads, 4 connections to each of 3 cluster nodes' });
      const all = await masters();
      // One chunk per master: random keys until each master has one.
      const chosen = new Map<string, ReturnType<typeof randomChunkKey>>();
      while (chosen.size < all.length) {
        const k = randomChunkKey('ns-route');
        chosen.set(ownerOf(all, keyHashSlot(tier.keyOf(k))).id, k);
      }
      const payloads = new Map([...chosen.values()].map((k) => [k, randomBytes((200 << 10) + 3)]));
      for (const [k, v] of payloads) expect(await tier.put(k, v)).toBe(true);
      expect(nativeStats(tier)).toMatchObject({ jobs: 3, failures: 0, nodes: 3, redirects: 0 });
      for (const [id, k] of chosen) {
        const owner = all.find((m) => m.id === id)!;
        const others = all.filter((m) => m !== owner);
        // -c off: a node answers only for its own slots.
        expect((await owner.node.cli(['EXISTS', tier.keyOf(k), `${tier.keyOf(k)}:s3`])).trim()).toBe('2');
        for (const o of others) expect((await o.node.cli(['GET', tier.keyOf(k)])).trim()).toMatch(/^MOVED /);
      }
      for (const [k, v] of payloads) expect((await tier.get(k))!.equals(v)).toBe(true);
      expect(nativeStats(tier).jobs).toBeGreaterThanOrEqual(6);
    } finally {
      await tier.close();
    }
  });

  it('a slot migrated under the tier: MOVED, that chunk retried natively at the named node byte-exact, the map refreshed, never glide', async () => {
    const lines: string[] = [];
    const tier = await ValkeyTier.create({ url: cluster.url, dataPath: 'native', segmentBytes: 64 << 10, log: (_l, m) => lines.push(m) });
    try {
      const k = randomChunkKey('ns-moved');
      const slot = keyHashSlot(tier.keyOf(k));
      // put: one native job; the first get of a namespace: its manifest, then its segments (two jobs).
      const v1 = randomBytes((300 << 10) + 11);
      expect(await tier.put(k, v1)).toBe(true);
      expect((await tier.get(k))!.equals(v1)).toBe(true);
      const s0 = nativeStats(tier);
      expect(s0).toMatchObject({ jobs: 3, failures: 0, redirects: 0 });

      // Read after a migration: the old owner answers MOVED; the same job runs again at the node it names.
      const first = ownerOf(await masters(), slot);
      const second = (await masters()).find((m) => m.id !== first.id)!;
      await migrateSlot(slot, second);
      expect((await tier.get(k))!.equals(v1)).toBe(true);
      expect(nativeStats(tier)).toMatchObject({ jobs: 5, failures: 1, redirects: 1, askRedirects: 0, redirectRetries: 1, redirectsToGlide: 0 });
      expect(lines.join('\n')).toMatch(new RegExp(`MOVED ${slot} ${second.node.host}:${second.node.port}; retried natively at ${second.node.host}:${second.node.port}`));
      await until('slot map refreshed', () => nativeStats(tier).mapRefreshes > s0.mapRefreshes);
      const refreshed = nativeStats(tier).mapRefreshes;
      expect((await tier.get(k))!.equals(v1)).toBe(true);
      expect(nativeStats(tier)).toMatchObject({ jobs: 6, failures: 1, redirects: 1 });

      // Write after a migration back: MOVED, the whole write again natively at the named node, manifest last.
      await migrateSlot(slot, first);
      const v2 = randomBytes((300 << 10) + 11);
      expect(await tier.put(k, v2)).toBe(true);
      expect(nativeStats(tier)).toMatchObject({ jobs: 8, failures: 2, redirects: 2, redirectRetries: 2, redirectsToGlide: 0 });
      expect((await first.node.cli(['EXISTS', tier.keyOf(k)])).trim()).toBe('1');
      await until('slot map refreshed again', () => nativeStats(tier).mapRefreshes > refreshed);
      expect((await tier.get(k))!.equals(v2)).toBe(true);
      const v3 = randomBytes((300 << 10) + 11);
      expect(await tier.put(k, v3)).toBe(true);
      expect((await tier.get(k))!.equals(v3)).toBe(true);
      expect(nativeStats(tier)).toMatchObject({ jobs: 11, failures: 2, redirects: 2, askRedirects: 0, redirectRetries: 2, redirectsToGlide: 0 });
      expect(tier.counters).toMatchObject({ errors: 0, corrupt: 0, skipped: 0 });
    } finally {
      await tier.close();
    }
  }, 60_000);
});
