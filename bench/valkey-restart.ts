/**
 * How the Valkey tier lives through a Valkey crash and restart (the 3 a.m.
 * case): a real valkey-server is killed with SIGKILL mid-run and started
 * again on the same port, with no persistence, while a writer keeps putting
 * 4 MiB chunks and a reader keeps reading back what was stored. Reports how
 * long the tier took to notice, how long after the restart the first store
 * landed, what was skipped, and whether any read returned bytes other than
 * the ones stored (it must never).
 *
 * Two cases: `busy` (traffic throughout the outage) and `idle` (no traffic
 * while Valkey is down; the first request after the restart finds
 * connections that were never marked down).
 *
 *   node dist/bench/valkey-restart.js [--down-ms 1000] [--json]
 */
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';

import { ChunkId } from '../src/tiers/chunk-id.js';
import { ValkeyTier } from '../src/tiers/valkey-tier.js';
import { startValkey } from './valkey-server.js';

export interface RestartCase {
  case: 'busy' | 'idle';
  down_ms: number;
  /** From SIGKILL until the tier reported itself unavailable (busy only; null if it never did). */
  noticed_down_ms: number | null;
  /** From the restarted server accepting connections until the first store succeeded. */
  first_store_after_restart_ms: number | null;
  puts: number;
  puts_ok: number;
  reads: number;
  hits: number;
  misses: number;
  /** Reads whose bytes differed from what was stored under that key: must be 0. */
  wrong_bytes: number;
  reconnects: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function runCase(kind: 'busy' | 'idle', downMs: number): Promise<RestartCase> {
  const server = await startValkey({});
  const tier = await ValkeyTier.create({ url: server.url, keyPrefix: 'kvtier-restart', connectTimeoutMs: 500 });
  const payloads = [randomBytes(4 << 20), randomBytes(4 << 20)];
  const stored = new Map<string, number>();
  const out: RestartCase = { case: kind, down_ms: downMs, noticed_down_ms: null, first_store_after_restart_ms: null, puts: 0, puts_ok: 0, reads: 0, hits: 0, misses: 0, wrong_bytes: 0, reconnects: 0 };
  let traffic = true;
  let stop = false;
  let killedAt = 0;
  let restartedAt = 0;
  let seq = 0;
  let inFlight = 0;
  const off = tier.onAvailability((up) => {
    if (!up && killedAt > 0 && out.noticed_down_ms === null) out.noticed_down_ms = Math.round(performance.now() - killedAt);
  });
  const writer = (async () => {
    while (!stop) {
      if (!traffic) {
        await sleep(5);
        continue;
      }
      const n = seq++;
      const key = ChunkId.of('restart', `c${n}`);
      out.puts++;
      inFlight++;
      const ok = await tier.put(key, payloads[n % 2]);
      inFlight--;
      if (ok) {
        out.puts_ok++;
        stored.set(key.hash, n % 2);
        if (restartedAt > 0 && out.first_store_after_restart_ms === null) out.first_store_after_restart_ms = Math.round(performance.now() - restartedAt);
      }
      await sleep(10);
    }
  })();
  const reader = (async () => {
    while (!stop) {
      const keys = [...stored.keys()];
      if (!traffic || keys.length === 0) {
        await sleep(5);
        continue;
      }
      const hash = keys[Math.floor(Math.random() * keys.length)];
      out.reads++;
      inFlight++;
      try {
        const got = await tier.get(ChunkId.of('restart', hash)).finally(() => inFlight--);
        if (got === null) out.misses++;
        else if (got.equals(payloads[stored.get(hash)!])) out.hits++;
        else out.wrong_bytes++;
      } catch {
        out.misses++;
      }
      await sleep(10);
    }
  })();
  try {
    await sleep(1500);
    if (kind === 'idle') {
      traffic = false;
      while (inFlight > 0) await sleep(2);
    }
    killedAt = performance.now();
    await server.kill();
    await sleep(downMs);
    await server.restart();
    restartedAt = performance.now();
    stored.clear(); // no persistence: nothing stored before survives
    traffic = true;
    const deadline = performance.now() + 20_000;
    while (out.first_store_after_restart_ms === null && performance.now() < deadline) await sleep(10);
    await sleep(1000);
  } finally {
    stop = true;
    await Promise.all([writer, reader]);
    off();
    out.reconnects = tier.counters.reconnects;
    await tier.close();
    await server.stop();
  }
  return out;
}

export async function runValkeyRestart(downMs = 1000): Promise<{ bench: 'valkey-restart'; cases: RestartCase[] }> {
  return { bench: 'valkey-restart', cases: [await runCase('busy', downMs), await runCase('idle', downMs)] };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const i = args.indexOf('--down-ms');
  const r = await runValkeyRestart(i >= 0 ? Number(args[i + 1]) : 1000);
  console.log(args.includes('--json') ? JSON.stringify(r) : r);
}
