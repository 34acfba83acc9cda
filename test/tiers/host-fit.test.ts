/** fitHostCapacity (src/tiers/host-fit.ts): a pool above MemAvailable is refused, or shrunk when asked. */
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { fitHostCapacity, memAvailableBytes } from '../../src/tiers/host-fit.js';
import { HostTier } from '../../src/tiers/host-tier.js';
import { HeapMemory, type HostMemory } from '../../src/tiers/host-memory.js';

const GiB = 1024 ** 3;

describe('fitHostCapacity', () => {
  it('takes what fits as asked', () => {
    expect(fitHostCapacity(5 * GiB, { shrink: false, memAvailable: 20 * GiB, sizeGb: 5 })).toEqual({ bytes: 5 * GiB, warning: null });
    expect(fitHostCapacity(5 * GiB, { shrink: false, memAvailable: null, sizeGb: 5 }).bytes).toBe(5 * GiB);
  });

  it('refuses more than MemAvailable, naming the key, the bytes and the limit', () => {
    const f = (): unknown => fitHostCapacity(30 * GiB, { shrink: false, memAvailable: 22 * GiB, sizeGb: 30 });
    expect(f).toThrow(ConfigError);
    expect(f).toThrow(`max_local_cpu_size 30 GB needs ${30 * GiB} bytes (30.00 GiB) of host memory, but MemAvailable is ${22 * GiB} bytes (22.00 GiB)`);
  });

  it('shrinks to 90% of MemAvailable when shrink_local_cpu_to_available, saying by how much', () => {
    const r = fitHostCapacity(30 * GiB, { shrink: true, memAvailable: 20 * GiB, sizeGb: 30 });
    expect(r.bytes).toBe(Math.floor((18 * GiB) / 4096) * 4096);
    expect(r.warning).toContain(`${30 * GiB - r.bytes} bytes (12.00 GiB) less than asked`);
  });

  it('reads MemAvailable from a meminfo file', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'kvtier-meminfo-')), 'meminfo');
    writeFileSync(file, 'MemTotal:       24683584 kB\nMemAvailable:   1000 kB\n');
    expect(memAvailableBytes(file)).toBe(1024000);
    expect(memAvailableBytes(join(file, 'missing'))).toBeNull();
  });
});

describe('HostTier over a pool that is still warming', () => {
  it('counts a reservation with no ready room as skippedWarming, not skippedFull', () => {
    let warm = false;
    const heap = new HeapMemory(1 << 20);
    const memory: HostMemory = {
      capacityBytes: 4 << 20,
      allocate: (n) => heap.allocate(n),
      info: () => ({ ...heap.info(), capacityBytes: 4 << 20, readyBytes: 1 << 20, warm }),
      whenWarm: async () => memory.info(),
      close: () => {},
    };
    const tier = new HostTier(memory);
    expect(tier.reserve(2 << 20)).toBeNull();
    expect(tier.stats()).toMatchObject({ skippedWarming: 1, skippedFull: 0 });
    warm = true;
    expect(tier.reserve(2 << 20)).toBeNull();
    expect(tier.stats()).toMatchObject({ skippedWarming: 1, skippedFull: 1 });
  });
});
