/**
 * The stall bench end to end at a small size: a real valkey-server stopped
 * with SIGSTOP during the load, two real daemons sharing only it, the
 * reference engine in /usr/bin/python3. Step times are not asserted here
 * (the bench measures them); that the long prompt really came from Valkey,
 * whole, and gave the recompute's logits, is.
 */
import { describe, expect, it } from 'vitest';
import { runStallBench } from '../../bench/stall.js';

describe('bench stall', () => {
  it('loads every chunk of the long prompt from a stopped-then-resumed Valkey while the batch steps, and its logits equal the recompute', async () => {
    const r = await runStallBench({ contextTokens: 1024, shorts: 2, baselineS: 1, pauseMs: 300, pauses: 1 });
    expect(r.bench).toBe('stall');
    expect(r.logits_match).toBe(true);
    // 1024 tokens, the last never loaded: 1023 tokens in 4 chunks (the last one partial), all from Valkey.
    expect(r.during_load.loaded_tokens).toBe(1023);
    expect(r.during_load.chunks_loaded).toBe(4);
    expect(r.during_load.failed_blocks).toBe(0);
    expect(r.during_load.valkey_stops).toBe(1);
    expect(r.during_load.load_ms).toBeGreaterThan(0);
    expect(r.baseline.step_ms.steps).toBeGreaterThan(0);
    expect(r.during_load.step_ms.steps).toBeGreaterThan(0);
    expect(r.target.ratio).toBeCloseTo(r.during_load.step_ms.max / (1.25 * r.baseline.step_ms.max + 5), 2);
  }, 300_000);
});
