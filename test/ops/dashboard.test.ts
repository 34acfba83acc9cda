/**
 * ops/grafana/kvtier.json against a live daemon: every metric a panel
 * queries is served by /metrics with the type the query assumes, and every
 * label it groups by is one the metric has. A renamed metric breaks this
 * test, not an operator's dashboard at 3 a.m.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { METRICS } from '../../src/metrics/names.js';
import { freePort, startValkey, stopAllValkey, type ValkeyServer } from '../../bench/valkey-server.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { parseMetrics, type Scrape } from '../metrics/parse.js';

interface Panel { id: number; type: string; title: string; targets?: Array<{ expr: string; legendFormat?: string }> }
const dashboard = JSON.parse(readFileSync(join(import.meta.dirname, '../../ops/grafana/kvtier.json'), 'utf8')) as { uid: string; panels: Panel[] };
const queries = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, ...t })));
/** Labels Prometheus adds itself, or that a histogram's series carry. */
const implicit = new Set(['instance', 'job', 'le']);

describe('the Grafana dashboard', () => {
  let valkey: ValkeyServer;
  let d: TestDaemon;
  let scrape: Scrape;

  beforeAll(async () => {
    valkey = await startValkey();
    const port = await freePort();
    d = await startTestDaemon({ remote_url: valkey.url, key_prefix: 'dash', metrics_port: port });
    scrape = parseMetrics(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
  });
  afterAll(async () => {
    await d?.stop();
    await stopAllValkey();
  });

  it('has panels with unique ids, each graph panel with at least one query', () => {
    expect(dashboard.uid).toBe('kvtier');
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of dashboard.panels) if (p.type !== 'row') expect(p.targets?.length ?? 0, p.title).toBeGreaterThan(0);
    expect(queries.length).toBeGreaterThan(20);
  });

  it('queries only metrics a live daemon serves, with their types and labels', () => {
    const defs = new Map<string, readonly string[]>(Object.values(METRICS).map((m) => [m.name, m.labels]));
    const used = new Set<string>();
    for (const q of queries) {
      const names = [...q.expr.matchAll(/\bkvtier_[a-z_]+/g)].map((m) => m[0]);
      expect(names.length, `${q.panel}: ${q.expr}`).toBeGreaterThan(0);
      for (const n of names) {
        const suffix = /_(bucket|count|sum)$/.exec(n);
        const family = suffix !== null && scrape.type.get(n.slice(0, suffix.index)) === 'histogram' ? n.slice(0, suffix.index) : n;
        expect(scrape.type.has(family), `${q.panel}: ${n} is not served`).toBe(true);
        if (/\brate\(/.test(q.expr) && q.expr.includes(`rate(${n}[`)) {
          // rate() of a gauge is a mistake Grafana would draw without complaint.
          expect(['counter', 'histogram'], `${q.panel}: rate() over ${n}`).toContain(scrape.type.get(family));
        }
        used.add(family);
        for (const by of q.expr.matchAll(/\bby \(([^)]*)\)/g)) {
          for (const label of by[1].split(',').map((s) => s.trim()).filter((s) => s !== '')) {
            if (!implicit.has(label) && label !== 'version') expect(defs.get(family), `${q.panel}: ${family} has no label ${label}`).toContain(label);
          }
        }
      }
    }
    // The panels the operators' issue asks for: hit rate per tier, tokens saved, latency, Valkey, pool use.
    for (const m of ['kvtier_hit_tokens_total', 'kvtier_prefill_tokens_saved_total', 'kvtier_lookup_duration_seconds', 'kvtier_store_duration_seconds',
      'kvtier_retrieve_duration_seconds', 'kvtier_valkey_up', 'kvtier_valkey_read_bytes_per_second', 'kvtier_host_pool_used_bytes']) {
      expect(used, m).toContain(m);
    }
  });
});
