/**
 * bench throughput --tier disk at a small size: every row's bytes come back
 * verified (through the tier: header, XXH3, O_DIRECT where taken), the
 * reference is measured in the same run with the same flags, and the ratios
 * are what the rows' figures say. No speed is asserted (benchmarks, not
 * timed tests).
 */
import { describe, expect, it } from 'vitest';
import { runDiskThroughput } from '../../bench/throughput-disk.js';

const MiB = 1 << 20;

describe('bench throughput --tier disk', () => {
  it('stores and retrieves verified chunks beside a same-run plain I/O reference', async () => {
    // 2.5 MiB: whole 4 KiB blocks, as the O_DIRECT reference needs.
    const r = await runDiskThroughput({ sizes: [MiB, 2.5 * MiB], roundBytes: 8 * MiB, rounds: 2, threads: 2 });
    expect(r).toMatchObject({ bench: 'throughput', tier: 'disk', io_threads: 2, rounds: 2 });
    expect(r.rows.map((x) => x.chunk_bytes)).toEqual([MiB, 2.5 * MiB]);
    for (const row of r.rows) {
      expect(row.verified, `${row.chunk_bytes}`).toBe(true);
      expect(row.reference.what).toContain(`${row.chunks_per_round} slabs`);
      expect(row.reference.what.includes('O_DIRECT')).toBe(r.direct);
      for (const v of [row.store_gbps, row.retrieve_gbps, row.reference.store_gbps, row.reference.retrieve_gbps]) expect(v).toBeGreaterThan(0);
      expect(row.ratio.store).toBeGreaterThan(0);
      expect(row.ratio.retrieve).toBeGreaterThan(0);
    }
  }, 120_000);
});
