/**
 * The SGLang throughput bench end to end at a small size: a real daemon, the
 * real HiCache backend in /usr/bin/python3, both forms, every page compared.
 * Speed is not asserted here (benches measure it); what it reports is.
 */
import { describe, expect, it } from 'vitest';
import { runSglangThroughput } from '../../bench/throughput-sglang.js';

describe('bench throughput --tier host --source sglang', () => {
  it('moves pages in block form through the staging region and inline, verified, beside a same-run reference', async () => {
    const r = await runSglangThroughput({ pages: 2, rounds: 1 });
    expect(r.rows.map((x) => [x.form, x.transfer_mode, x.verified])).toEqual([['block', 'blocks', true], ['inline', 'inline', true]]);
    for (const x of [...r.rows, r.reference]) {
      expect(x.store_gbps).toBeGreaterThan(0);
      expect(x.retrieve_gbps).toBeGreaterThan(0);
    }
    expect(r.page_bytes).toBe(8 << 20);
    expect(r.ratio.block_vs_reference.store).toBeCloseTo(r.rows[0].store_gbps / r.reference.store_gbps, 1);
    for (const x of [...r.rows, r.reference]) expect([x.samples_ms.store.length, x.samples_ms.load.length]).toEqual([1, 1]);
  }, 120_000);
});
