/**
 * The observer's one measurement feeds the histogram and the slow-op ring;
 * per-op rings keep the last 256 lookups however many stores come after.
 * And the layering: src/metrics imports nothing from src/protocol.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LOOKUP, RequestMetrics } from '../../src/metrics/request-metrics.js';
import { PER_OP } from '../../src/metrics/slow-ops.js';

function metrics() {
  const registers = [new Registry()];
  return new RequestMetrics({
    lookup: new Histogram({ name: 'l', help: 'l', buckets: [1], registers }),
    store: new Histogram<'form'>({ name: 's', help: 's', labelNames: ['form'], buckets: [1], registers }),
    retrieve: new Histogram<'form'>({ name: 'r', help: 'r', labelNames: ['form'], buckets: [1], registers }),
  });
}

describe('request metrics', () => {
  it('keeps the last 256 lookups for the latency percentiles while stores keep coming', () => {
    const m = metrics();
    for (let i = 1; i <= 300; i++) m.lookupDone(i / 1e6, 1);
    for (let i = 0; i < 1000; i++) m.storeCopied('inline', 0.5, 1, 10);
    expect(m.ring.size).toBe(2 * PER_OP);
    // Lookups 45..300 us are the last 256.
    expect(m.ring.latencyUs(LOOKUP)).toEqual({ p50: 173, p99: 298, max: 300 });
    expect(m.ring.slowest(2).map((o) => o.op)).toEqual(['store', 'store']);
  });

  it('counts errors and registrations, and starts at zero', () => {
    const m = metrics();
    expect(m.ring.latencyUs(LOOKUP)).toEqual({ p50: 0, p99: 0, max: 0 });
    m.failed('store');
    m.kvRegistered();
    m.kvRegistered();
    m.kvReleased();
    expect(m.errors).toEqual({ lookup: 0, store: 1, retrieve: 0 });
    expect(m.registeredWorkers).toBe(1);
  });

  it('src/metrics imports nothing from src/protocol', () => {
    const dir = join(import.meta.dirname, '../../src/metrics');
    for (const f of readdirSync(dir)) {
      expect(readFileSync(join(dir, f), 'utf8'), f).not.toMatch(/from '\.\.\/protocol\//);
    }
  });
});
