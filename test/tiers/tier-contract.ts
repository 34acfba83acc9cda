/**
 * The contract every Tier keeps, as one suite: call runTierContract() from a
 * *.test.ts file with a factory for the tier under test (host, valkey single,
 * valkey cluster). Keys are random per test, so a shared backend is fine.
 */

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkId } from '../../src/tiers/chunk-id.js';
import type { Tier } from '../../src/tiers/tier.js';

export interface TierContractOptions {
  /** Largest payload tried; default 10 MiB + 3 bytes. */
  maxBytes?: number;
  /** Sizes that must be exercised besides the defaults (e.g. segment edges). */
  extraSizes?: number[];
  namespaceId?: string;
  /** Runs as the suite's last test, on the same tier (e.g. which data path carried it). */
  finally?: (tier: Tier) => void | Promise<void>;
}

const MiB = 1 << 20;

export function randomChunkKey(namespaceId = 'ns-contract'): ChunkId {
  return ChunkId.of(namespaceId, randomBytes(32).toString('hex'));
}

export function runTierContract(name: string, makeTier: () => Promise<Tier>, options: TierContractOptions = {}): void {
  const maxBytes = options.maxBytes ?? 10 * MiB + 3;
  const ns = options.namespaceId ?? 'ns-contract';
  const key = (): ChunkId => randomChunkKey(ns);
  const sizes = [...new Set([0, 1, 255, 4096, MiB - 1, MiB, MiB + 1, 3 * MiB + 17, maxBytes, ...(options.extraSizes ?? [])])]
    .filter((n) => n <= maxBytes)
    .sort((a, b) => a - b);

  describe(`tier contract: ${name}`, () => {
    let tier: Tier;
    beforeAll(async () => {
      tier = await makeTier();
    });
    afterAll(async () => {
      await tier?.close();
    });

    it.each(sizes)('put then get is byte-exact for %i bytes', async (size) => {
      const k = key();
      const payload = randomBytes(size);
      expect(await tier.put(k, payload)).toBe(true);
      const got = await tier.get(k);
      expect(got).not.toBeNull();
      expect(got!.length).toBe(size);
      expect(got!.equals(payload)).toBe(true);
    });

    it('a key never stored is a miss (null)', async () => {
      expect(await tier.get(key())).toBeNull();
    });

    it('the stored bytes do not change when the caller reuses its buffer', async () => {
      const k = key();
      const payload = randomBytes(64 * 1024);
      const copy = Buffer.from(payload);
      expect(await tier.put(k, payload)).toBe(true);
      payload.fill(0);
      expect((await tier.get(k))!.equals(copy)).toBe(true);
    });

    it('contains answers one boolean per key, in order', async () => {
      const a = key();
      const b = key();
      const missing = key();
      await tier.put(a, randomBytes(100));
      await tier.put(b, randomBytes(2 * MiB + 5));
      expect(await tier.contains([a, missing, b, missing, a])).toEqual([true, false, true, false, true]);
      expect(await tier.contains([])).toEqual([]);
    });

    it('a second put of a key replaces the first', async () => {
      const k = key();
      await tier.put(k, randomBytes(3 * MiB));
      const second = randomBytes(1000);
      expect(await tier.put(k, second)).toBe(true);
      expect((await tier.get(k))!.equals(second)).toBe(true);
    });

    it('delete removes chunks and counts only those that existed', async () => {
      const small = key();
      const large = key();
      await tier.put(small, randomBytes(10));
      await tier.put(large, randomBytes(2 * MiB + 1));
      expect(await tier.delete([small, key(), large])).toBe(2);
      expect(await tier.get(small)).toBeNull();
      expect(await tier.get(large)).toBeNull();
      expect(await tier.contains([small, large])).toEqual([false, false]);
      expect(await tier.delete([small])).toBe(0);
      expect(await tier.delete([])).toBe(0);
    });

    it('keys of another namespace with the same hash are distinct', async () => {
      const k = key();
      const other: ChunkId = ChunkId.of(`${ns}-other`, k.hash);
      await tier.put(k, Buffer.from('mine'));
      expect(await tier.get(other)).toBeNull();
      expect(await tier.contains([other])).toEqual([false]);
    });

    it('concurrent puts and gets of different keys all round-trip', async () => {
      const items = Array.from({ length: 12 }, (_, i) => ({ k: key(), v: randomBytes((i % 4) * MiB + 333) }));
      expect(await Promise.all(items.map(({ k, v }) => tier.put(k, v)))).toEqual(items.map(() => true));
      const got = await Promise.all(items.map(({ k }) => tier.get(k)));
      got.forEach((g, i) => expect(g!.equals(items[i].v)).toBe(true));
    });

    if (options.finally) {
      const check = options.finally;
      it('afterwards: the tier is what the suite meant to test', async () => {
        await check(tier);
      });
    }
  });
}
