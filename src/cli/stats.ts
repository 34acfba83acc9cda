/**
 * `kvtier stats`: the daemon's figures for a person (or --json for tools).
 */
import { KvtierClient } from '../protocol/client.js';
import { errorMessage } from '../errors.js';
import type { DaemonStats } from '../daemon.js';
import type { SlowOp } from '../metrics/slow-ops.js';

export async function runStats(socket: string, json: boolean): Promise<number> {
  let client: KvtierClient;
  try {
    client = await KvtierClient.connect({ path: socket, clientKind: 'cli', timeoutMs: 3000 });
  } catch (e) {
    process.stderr.write(`kvtier stats: no daemon at ${socket}: ${errorMessage(e)}\n`);
    return 1;
  }
  try {
    const stats = (await client.stats()) as unknown as DaemonStats;
    process.stdout.write(json ? `${JSON.stringify(stats)}\n` : formatStats(stats));
    return 0;
  } finally {
    await client.close();
  }
}

const GiB = 1024 ** 3;
const fmtBytes = (n: number): string => (n >= GiB ? `${(n / GiB).toFixed(2)} GiB` : `${(n / 1024 ** 2).toFixed(1)} MiB`);
const pct = (a: number, b: number): string => (b === 0 ? '-' : `${((100 * a) / b).toFixed(1)}%`);

export function formatStats(s: DaemonStats): string {
  const c = s.counters;
  const rows: Array<[string, string]> = [
    ['version', `${s.version}, up ${s.uptimeSeconds} s, socket ${s.socket}`],
    ['connections / leases', `${s.connections} / ${s.leases}`],
    ['host memory', `${fmtBytes(s.memory.usedBytes)} of ${fmtBytes(s.memory.capacityBytes)} (${s.memory.kind}${s.memory.pinned ? ', pinned' : ''}${s.memory.hugePages ? ', huge pages' : ''})`],
    ['host pool warming', warming(s)],
    ['host chunks', `${s.host.entries} (${s.host.pinnedEntries} pinned, ${fmtBytes(s.host.pinnedBytes)})`],
    ['evictions', `${s.host.evictions} (${fmtBytes(s.host.evictedBytes)})`],
    ['kvtier pin', s.pins === undefined ? '-' : `${s.pins.chunks} chunks, ${fmtBytes(s.pins.bytes)} of ${fmtBytes(s.pins.budgetBytes)} pin_budget_bytes`],
    ['lookups', `${c.lookups}; chunk hit rate ${pct(c.hitChunks, c.lookupChunks)} (host ${c.hostHitChunks}${s.disk ? `, disk ${c.diskHitChunks}` : ''}, valkey ${c.remoteHitChunks}); tokens served ${c.hitTokens}`],
    ['token hit rate', tokenRates(s)],
    ['miss reasons', missLine(s)],
    ['bypassed', bypassLine(s)],
    ['lookup latency', `p50 ${s.lookupLatencyUs.p50} us, p99 ${s.lookupLatencyUs.p99} us, max ${s.lookupLatencyUs.max} us (last 256)`],
    ['hash memo', memoLine(s)],
    ['stored', `${c.storedChunks} chunks, ${fmtBytes(c.storedBytes)}; ${c.presentChunks} already present; ${c.skippedChunks} skipped (${s.host.skippedWarming ?? 0} while the pool warmed, ${s.host.skippedFull} with the pool full of pinned chunks)`],
    ['retrieved', `${c.retrievedChunks} chunks, ${fmtBytes(c.retrievedBytes)}; ${c.failedRetrieveChunks} failed (recomputed by the worker)`],
    ['prefetch', s.prefetch === undefined ? '-' : `${fmtBytes(s.prefetch.chargedBytes)} of ${fmtBytes(s.prefetch.budgetBytes)} prefetch_budget_mb in flight or unread; ${s.prefetch.waitingLookups} Lookups waiting, ${s.prefetch.waits} waits so far`],
    ['write-behind', `${s.writeBehind.queuedJobs} queued (${fmtBytes(s.writeBehind.queuedBytes)}), ${s.writeBehind.inFlight} in flight, ${s.writeBehind.written} written, ${s.writeBehind.failed} failed, ${s.writeBehind.dropped} dropped`],
    ['bytes per tier', tierBytes(s)],
    ['disk', diskLine(s)],
    ['valkey', s.remote.configured ? `${s.remote.available ? 'available' : 'DOWN'} ${s.remote.detail === null ? '' : JSON.stringify(s.remote.detail)}` : 'not configured'],
    ['valkey vs recompute', paceLine(s)],
    ['native', s.native.loaded ? s.native.detail : `not loaded: ${s.native.detail}`],
  ];
  (s.slowOps ?? []).forEach((op, i) => rows.push([i === 0 ? 'slowest recent ops' : '', slowOp(op)]));
  if (s.slowOps !== undefined && s.slowOps.length === 0) rows.push(['slowest recent ops', 'none yet']);
  const w = Math.max(...rows.map(([k]) => k.length));
  return `${rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n')}\n`;
}

function warming(s: DaemonStats): string {
  const m = s.memory;
  const ready = `${fmtBytes(m.readyBytes)} of ${fmtBytes(m.capacityBytes)} ready (${pct(m.readyBytes, m.capacityBytes)})`;
  if (!m.warm) return `in progress: ${ready}, ${fmtBytes(m.lockedBytes)} locked; stores that find no ready room are skipped`;
  if (m.kind === 'heap') return 'none needed (heap memory)';
  return m.pinned ? `done: ${ready}, all page-locked` : `done: ${ready}, NOT page-locked (${fmtBytes(m.lockedBytes)} locked): ${m.detail}`;
}

function memoLine(s: DaemonStats): string {
  const m = s.chainMemo;
  if (m === undefined || m === null) return 'none (the JavaScript chain)';
  if (m.bytes === 0) return `off (chain_memo_mb: 0) or nothing hashed yet; ${m.misses} chunks hashed`;
  return `${pct(m.hits, m.hits + m.misses)} of chunk steps from the memo (${m.hits} of ${m.hits + m.misses}), ${m.slots} slots, ${fmtBytes(m.bytes)}`;
}

function missLine(s: DaemonStats): string {
  if (s.misses === undefined) return '-';
  return `${Object.entries(s.misses).map(([k, n]) => `${k} ${n}`).join(', ')} (chunks; lookup-time reasons once per lookup)`;
}

function bypassLine(s: DaemonStats): string {
  const b = Object.entries(s.bypassed ?? {});
  if (b.length === 0) return 'none (requests clients kept away from kvtier, by reason)';
  return `${b.map(([k, n]) => `${k} ${n}`).join(', ')} (requests clients kept away from kvtier)`;
}

function paceLine(s: DaemonStats): string {
  const p = s.remote.pace;
  if (!s.remote.configured || p === undefined) return '-';
  const rate = p.readBytesPerS === null ? 'no recent read rate' : `reads at ${fmtBytes(p.readBytesPerS)}/s`;
  const tps = p.recomputeTokensPerS === null ? 'recompute_tokens_per_s not set: Valkey hits always offered' : `recompute ${p.recomputeTokensPerS} tokens/s`;
  return `${rate}; ${tps}; ${s.counters.remoteSlowSkippedChunks ?? 0} chunks left to recompute as faster`;
}

function tokenRates(s: DaemonStats): string {
  const t = s.tokens;
  if (t === undefined) return '-';
  const valkey = s.remote.configured ? `, valkey ${pct(t.valkeyHit, t.valkeyLookup)} of ${t.valkeyLookup} asked` : '';
  return `${pct(t.hostHit + t.valkeyHit, t.lookup)} of ${t.lookup} looked up (host ${pct(t.hostHit, t.lookup)}${valkey}); ${t.prefillSaved} prefill tokens handed back`;
}

function tierBytes(s: DaemonStats): string {
  const c = s.counters;
  const d = s.remote.detail;
  const num = (k: string): number => (d !== null && typeof d[k] === 'number' ? d[k] : 0);
  const valkey = s.remote.configured ? `; valkey stored ${fmtBytes(num('bytesOut'))}, read ${fmtBytes(num('bytesIn'))}` : '';
  return `host stored ${fmtBytes(c.storedBytes)}, retrieved ${fmtBytes(c.retrievedBytes)}${valkey}`;
}

function diskLine(s: DaemonStats): string {
  const d = s.disk;
  if (d === null || d === undefined) return 'not configured (local_disk)';
  return `${d.dir} (${d.direct ? 'O_DIRECT' : 'page cache'}): ${d.entries} chunks, ${fmtBytes(d.usedBytes)} of ${fmtBytes(d.capacityBytes)}; ` +
    `written ${d.writes} (${fmtBytes(d.writtenBytes)}), hits ${d.hits} (${fmtBytes(d.readBytes)}), ${d.evictions} evicted (${fmtBytes(d.evictedBytes)}); ` +
    `skipped ${d.skippedFull} full, ${d.ioErrors} I/O errors, ${d.queue.dropped} queue full; ${d.corrupt} failed verification; ${d.queue.queuedJobs} queued`;
}

function slowOp(op: SlowOp): string {
  const ago = Math.max(0, Math.round((Date.now() - op.at) / 1000));
  return `${op.op.padEnd(8)} ${op.ms.toFixed(2).padStart(9)} ms  ${op.chunks} chunks, ${fmtBytes(op.bytes)}, ${ago} s ago`;
}
