/**
 * A cluster master killed and restarted under load: the tier never throws,
 * never serves wrong bytes, and stores again once the node is back; on
 * both data paths (native: the dead node's link fails its jobs and reconnects).
 */

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ValkeyTier } from '../../src/tiers/valkey-tier.js';
import { startValkeyCluster, stopAllValkey, type ValkeyCluster } from '../../bench/valkey-server.js';
import { randomChunkKey } from './tier-contract.js';

let cluster: ValkeyCluster;
const unhandled: unknown[] = [];
const onUnhandled = (e: unknown): void => {
  unhandled.push(e);
};

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  cluster = await startValkeyCluster();
});
afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  await stopAllValkey();
});

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.each(['native', 'glide'] as const)('valkey cluster faults (%s data path)', (dataPath) => {
  it('a master killed and restarted: misses and skips, no errors, then stores on every node', async () => {
    const tier = await ValkeyTier.create({
      url: cluster.url, dataPath, segmentBytes: 256 * 1024, log: () => undefined,
      reconnectMinMs: 50, reconnectMaxMs: 500, connectTimeoutMs: 500, requestTimeoutMs: 1000,
    });
    try {
      let stop = false;
      let wrong = 0;
      const worker = async (): Promise<void> => {
        while (!stop) {
          const k = randomChunkKey();
          const v = randomBytes(300 * 1024);
          await tier.put(k, v);
          const got = await tier.get(k);
          if (got && !got.equals(v)) wrong++;
          await tier.contains([k, randomChunkKey()]);
          await new Promise((r) => setTimeout(r, 2));
        }
      };
      const workers = [worker(), worker()];
      await until('stores before the kill', () => tier.counters.stores >= 5, 10_000);
      const victim = cluster.nodes[1];
      await victim.kill();
      const skippedAtKill = tier.counters.skipped;
      await until('a put skipped while the node is down', () => tier.counters.skipped > skippedAtKill, 15_000);
      await victim.restart();
      // The restarted node comes back empty but with its nodes.conf: same id, same slots.
      await until('cluster ok again', async () => (await victim.cli(['cluster', 'info'])).includes('cluster_state:ok'), 20_000);
      stop = true;
      await Promise.all(workers);
      expect(wrong).toBe(0);
      // Every node takes writes again: 40 random keys cover all three masters.
      await until('tier available', () => tier.available, 15_000);
      const keys = Array.from({ length: 40 }, () => randomChunkKey());
      await until('all puts succeed', async () => {
        const ok = await Promise.all(keys.map((k) => tier.put(k, Buffer.from(k.hash))));
        return ok.every(Boolean);
      }, 20_000);
      const back = await Promise.all(keys.map((k) => tier.get(k)));
      back.forEach((b, i) => expect(b?.toString()).toBe(keys[i].hash));
      // And segmented chunks on every node, on the path under test.
      const big = keys.map((k) => ({ k, v: randomBytes(300 * 1024) }));
      await until('all segmented puts succeed', async () => (await Promise.all(big.map(({ k, v }) => tier.put(k, v)))).every(Boolean), 20_000);
      const bigBack = await Promise.all(big.map(({ k }) => tier.get(k)));
      bigBack.forEach((b, i) => expect(b?.equals(big[i].v)).toBe(true));
      const native = tier.stats().native as { jobs: number; nodes: number } | null;
      expect(tier.dataPath.path).toBe(dataPath);
      if (dataPath === 'native') expect(native).toMatchObject({ nodes: 3 });
      else expect(native).toBeNull();
      expect(unhandled).toEqual([]);
    } finally {
      await tier.close();
    }
  }, 90_000);
});
