/**
 * Model mode of `kvtier bench ttft`: real bytes, modelled compute.
 *
 * Per model shape and context length, with one valkey-server (noeviction,
 * maxmemory sized for the largest context, so a shortfall is an error and
 * never a silent eviction) and kvtierd child processes:
 *
 *   recompute   modelled prefill of context + question
 *   (daemon A)  Store every chunk from the worker's shm KV (block form), wait
 *               until Valkey has them (StoreCommitted)
 *   host_hit    daemon A: Lookup + Retrieve into the worker's blocks (median
 *               of --host-reps) + modelled prefill of the question
 *   (SIGTERM A, which finishes writing its disk tier; start A again on the
 *    same local_disk: host tier empty, disk warm)
 *   disk_hit    daemon A': Lookup (chunks found on disk, prefetch starts) +
 *               Retrieve + modelled prefill (block path only: the disk tier
 *               needs the native addon; skipped when the temp dir lacks space)
 *   (stop A; start daemon B, empty, same Valkey: another instance of the fleet)
 *   valkey_hit  daemon B: Lookup (chunks found in Valkey, prefetch starts) +
 *               Retrieve + modelled prefill of the question; beside it, in
 *               the same run, valkey-benchmark GET of segment-sized values
 *               on the same server (-c 4 and 8, the better one), and the
 *               TTFT the hit would have if its bytes moved at that rate:
 *               the server's own ceiling for this row
 *
 * Pools are sized to the context (+16 MiB), the write-behind queue to
 * all of it, leases to 10 minutes; a combination whose memory estimate does
 * not fit in 85% of MemAvailable is skipped and listed, never shrunk.
 */
import { mkdtempSync, readFileSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { packTokens } from '../src/chunking/tokens.js';
import { UsageError } from '../src/errors.js';
import { KvtierClient } from '../src/protocol/client.js';
import { startValkey, type ValkeyServer } from './valkey-server.js';
import { reference as valkeyBenchmark } from './throughput-valkey.js';
import type { DaemonProcess } from './daemon-process.js';
import { startBenchDaemon } from './ttft-daemon.js';
import { cpuSnapshot, cpuUse } from './cpu-use.js';
import { SHAPES, describePrefill, kvBytesPerToken, prefillMs, type ModelShape, type PrefillModel } from './ttft-shapes.js';
import { blocksPath, inlinePath, type LoadTiming, type WorkerPath } from './ttft-worker.js';
import type { TtftRow } from './ttft-types.js';
import type { NativeStats } from '../src/tiers/valkey-native.js';

const MiB = 1 << 20;
const GiB = 1 << 30;
const CHUNK_TOKENS = 256;
/** Valkey's allocator rounds a 1 MiB segment up a size class: budget 35% over the payload. */
const VALKEY_OVERHEAD = 1.35;
/**
 * Largest host pool the block path is run with. The native pool is built
 * from 2 GiB arenas, so only memory bounds it (checked separately against
 * MemAvailable); --inline and tests can still lower it to exercise the
 * inline path (heap pool, chunks through the socket, labelled `path: "inline"`).
 */
const NATIVE_POOL_MAX = Number.POSITIVE_INFINITY;
/** Chunks per inline Store/Retrieve frame: 7 x 32 MiB stays under the 256 MiB max_frame_bytes. */
const INLINE_WINDOW = 7;
/** Daemons running now, killed if the bench is interrupted. */
const live = new Set<DaemonProcess>();

type LinkCounts = Pick<NativeStats, 'connections' | 'parts' | 'busyMs' | 'waitMs' | 'bytesIn'>;

/** Daemon B's native Valkey link counters (Stats remote.detail.native); null on the glide path. */
async function linkStats(c: KvtierClient): Promise<LinkCounts | null> {
  const s = (await c.stats()) as { remote?: { detail?: { native?: LinkCounts | null } } };
  return s.remote?.detail?.native ?? null;
}

/**
 * What the native link did during a hit of `ms`: how busy its connections
 * were (1: every connection ran a part the whole time, the link or the
 * server is the limit; well below 1 with short waits: the link was not fed)
 * and how long a part waited for a connection.
 */
function linkUse(a: LinkCounts, b: LinkCounts, ms: number): Record<string, number> {
  const parts = b.parts - a.parts;
  return {
    connections: b.connections,
    parts,
    busy_fraction: round((b.busyMs - a.busyMs) / (b.connections * ms), 3),
    wait_ms_per_part: parts > 0 ? round((b.waitMs - a.waitMs) / parts, 2) : 0,
    bytes_in: b.bytesIn - a.bytesIn,
  };
}

/**
 * valkey-benchmark's GET rate on the bench's server, right after the
 * valkey_hit (1 MiB values, the segment size; -c 4 and 8, the better), and
 * what the hit's TTFT would be at that rate; null where valkey-benchmark is
 * missing. Its one key stays until the bench's FLUSHALL.
 */
async function serverReference(url: string, bytes: number, tailMs: number, recomputeMs: number, progress: (m: string) => void): Promise<TtftRow['server_reference']> {
  try {
    const runs = [await valkeyBenchmark(url, MiB, 2048, 4, null), await valkeyBenchmark(url, MiB, 2048, 8, null)].filter((r) => r !== null);
    if (runs.length === 0) return null;
    const best = runs.reduce((a, b) => (b.retrieve_gbps > a.retrieve_gbps ? b : a));
    const ttft = bytes / (best.retrieve_gbps * 1e6) + tailMs;
    return { what: best.what, get_gbps: best.retrieve_gbps, ttft_ms_at_get_rate: round(ttft), ratio_at_get_rate: round(ttft / recomputeMs, 3) };
  } catch (e) {
    progress(`valkey-benchmark reference skipped: ${e instanceof Error ? e.message : String(e)}`);
    return null;
  }
}

async function daemon(env: Record<string, string>): Promise<DaemonProcess> {
  const d = await startBenchDaemon(env);
  live.add(d);
  return d;
}

async function stop(d: DaemonProcess): Promise<void> {
  live.delete(d);
  await d.stop();
}

export interface ModelModeOptions {
  models: string[];
  contexts: number[];
  questionTokens: number;
  regionBytes: number;
  hostReps: number;
  prefill: PrefillModel;
  /** Run contexts whose pool exceeds the native limit on the inline path instead of skipping them. */
  inline: boolean;
  /** Default: no limit but memory (tests lower it). */
  nativePoolMax?: number;
}

export interface ModelModeResult {
  rows: TtftRow[];
  skipped: Array<{ model: string; context_tokens: number; reason: string }>;
  compute: string;
  shapes: Record<string, { what: string; kv_bytes_per_token: number; chunk_bytes: number }>;
  setup: Record<string, unknown>;
}

function memAvailable(): number {
  const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m === null ? 0 : Number(m[1]) * 1024;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round = (v: number, d = 1): number => Math.round(v * 10 ** d) / 10 ** d;
const fmtGiB = (b: number): string => `${(b / GiB).toFixed(2)} GiB`;

/** The daemon pool for a context: its chunks plus 16 MiB. */
function poolBytes(contextBytes: number): number {
  return contextBytes + 16 * MiB;
}

/** Peak bytes of one (shape, context): Valkey copy + one daemon pool + the worker region. */
function peakBytes(contextBytes: number, regionBytes: number): number {
  return contextBytes * VALKEY_OVERHEAD + poolBytes(contextBytes) + regionBytes;
}

async function valkeyUsed(v: ValkeyServer): Promise<number> {
  const m = /used_memory:(\d+)/.exec(await v.cli(['INFO', 'memory']));
  return m === null ? 0 : Number(m[1]);
}

export async function runModelMode(opts: ModelModeOptions, progress: (msg: string) => void): Promise<ModelModeResult> {
  const shapes = opts.models.map((name) => {
    const s = SHAPES[name];
    if (s === undefined) throw new UsageError(`unknown model shape ${name}; known: ${Object.keys(SHAPES).join(', ')}`);
    return s;
  });
  for (const c of opts.contexts) {
    if (c % CHUNK_TOKENS !== 0) throw new UsageError(`expected context lengths that are multiples of ${CHUNK_TOKENS}, got ${c}`);
  }
  const avail = memAvailable();
  const plan: Array<{ shape: ModelShape; context: number; inline: boolean }> = [];
  const skipped: ModelModeResult['skipped'] = [];
  for (const shape of shapes) {
    const region = Math.max(kvBytesPerToken(shape) * CHUNK_TOKENS, Math.floor(opts.regionBytes / (kvBytesPerToken(shape) * CHUNK_TOKENS)) * kvBytesPerToken(shape) * CHUNK_TOKENS);
    for (const context of opts.contexts) {
      const inline = poolBytes(context * kvBytesPerToken(shape)) > (opts.nativePoolMax ?? NATIVE_POOL_MAX);
      const need = peakBytes(context * kvBytesPerToken(shape), inline ? INLINE_WINDOW * 2 * kvBytesPerToken(shape) * CHUNK_TOKENS : region);
      if (inline && !opts.inline) {
        skipped.push({ model: shape.name, context_tokens: context, reason: `needs a ${fmtGiB(poolBytes(context * kvBytesPerToken(shape)))} host pool; above the block-path pool limit set for this run; --inline measures it on the slower inline path` });
      } else if (need > 0.85 * avail) {
        skipped.push({ model: shape.name, context_tokens: context, reason: `needs ~${fmtGiB(need)} at once (Valkey copy + daemon pool + worker memory); 85% of MemAvailable is ${fmtGiB(0.85 * avail)}` });
      } else plan.push({ shape, context, inline });
    }
  }
  for (const s of skipped) progress(`skipping ${s.model} at ${s.context_tokens} tokens: ${s.reason}`);
  for (const p of plan.filter((x) => x.inline)) {
    progress(`${p.shape.name} at ${p.context} tokens needs a ${fmtGiB(poolBytes(p.context * kvBytesPerToken(p.shape)))} pool, above the block-path pool limit: inline path (heap pool, chunks through the socket)`);
  }
  const maxContextBytes = Math.max(0, ...plan.map((p) => p.context * kvBytesPerToken(p.shape)));
  const maxmemoryMb = Math.ceil((maxContextBytes * VALKEY_OVERHEAD + 256 * MiB) / MiB);
  const rows: TtftRow[] = [];
  const setupRows: Array<Record<string, unknown>> = [];
  const valkey = plan.length > 0 ? await startValkey({ maxmemory: `${maxmemoryMb}mb`, maxmemoryPolicy: 'noeviction' }) : null;
  // Ctrl-C: no shm files or valkey-server left behind (daemons die with their pipe).
  let current: WorkerPath | null = null;
  const interrupted = (): void => {
    current?.cleanup();
    for (const d of live) d.child.kill('SIGKILL');
    void valkey?.stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    for (const { shape, context, inline } of plan) {
      const kv = inline ? inlinePath(shape, INLINE_WINDOW) : blocksPath(shape, Math.min(opts.regionBytes, context * kvBytesPerToken(shape)), `${shape.name}-${context}`);
      current = kv;
      try {
        const r = await runOne(shape, context, kv, valkey!, opts, progress);
        rows.push(...r.rows);
        setupRows.push(r.setup);
      } finally {
        kv.cleanup();
      }
      await valkey!.cli(['FLUSHALL']);
    }
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    await valkey?.stop();
  }
  return {
    rows,
    skipped,
    compute: describePrefill(opts.prefill),
    shapes: Object.fromEntries(shapes.map((s) => [s.name, { what: s.what, kv_bytes_per_token: kvBytesPerToken(s), chunk_bytes: kvBytesPerToken(s) * CHUNK_TOKENS }])),
    setup: {
      valkey: `valkey-server on 127.0.0.1, maxmemory ${maxmemoryMb} MiB, maxmemory-policy noeviction (a shortfall fails the store; nothing is evicted silently)`,
      daemons: 'kvtierd child processes (dist/src/cli/main.js), pool sized to the context + 16 MiB, write_behind_queue_bytes = context bytes + 64 MiB, lease_ttl_ms 600000',
      worker: `path "blocks": shm files in /dev/shm, vLLM flash-attn layout, block 16, registered with RegisterKv, block-form Store/Retrieve through the native gather/scatter; region of at most ${fmtGiB(opts.regionBytes)} reused: chunk i uses slot i mod window, requests cut into windows of distinct block ids; every byte of every chunk moves`,
      inline: `path "inline" (contexts whose pool would exceed the block-path pool limit): heap pool, chunks in Store/RetrieveDone frames through the socket, ${INLINE_WINDOW} per request, kept in the worker process (no scatter into blocks); more copies than the block path, so slower`,
      question_tokens: opts.questionTokens,
      mem_available_bytes: avail,
      runs: setupRows,
    },
  };
}

interface OneResult {
  rows: TtftRow[];
  setup: Record<string, unknown>;
}

async function runOne(shape: ModelShape, context: number, kv: WorkerPath, valkey: ValkeyServer, opts: ModelModeOptions, progress: (msg: string) => void): Promise<OneResult> {
  const label = `${shape.name} ${context / 1024}K`;
  const chunks = context / CHUNK_TOKENS;
  const bytes = chunks * kv.chunkBytes;
  const prompt = context + opts.questionTokens;
  const tokens = packTokens(Array.from({ length: prompt }, () => randomInt(0, 128_256)));
  const env = {
    KVTIER_REMOTE_URL: valkey.url,
    KVTIER_KEY_PREFIX: 'ttft',
    KVTIER_MAX_LOCAL_CPU_SIZE: String(poolBytes(bytes) / GiB),
    KVTIER_WRITE_BEHIND_QUEUE_BYTES: String(bytes + 64 * MiB),
    KVTIER_LEASE_TTL_MS: '600000',
    ...kv.env,
  };
  const tail = prefillMs(shape, context, opts.questionTokens, opts.prefill);
  const full = prefillMs(shape, 0, prompt, opts.prefill);
  const base = { model: shape.name, context_tokens: context, prompt_tokens: prompt, chunk_bytes: kv.chunkBytes, path: kv.path, compute: 'modelled' as const };
  const rows: TtftRow[] = [{
    ...base, case: 'recompute', cached_tokens: 0, prefill_tokens: prompt, prefill_ms: round(full), transfer_ms: 0, ttft_ms: round(full),
    bytes_moved: 0, gbps: null, prefill_tokens_per_s: Math.round(prompt / (full / 1000)), loaded_chunks: 0, failed_chunks: 0, samples: 1, verified: null,
  }];
  const hitRow = (c: 'host_hit' | 'disk_hit' | 'valkey_hit', t: LoadTiming, samples: number, verified: boolean | null): TtftRow => {
    const transfer = t.lookupMs + t.retrieveMs;
    const moved = t.loaded * kv.chunkBytes;
    return {
      ...base, case: c, cached_tokens: t.loaded * CHUNK_TOKENS, prefill_tokens: prompt - t.loaded * CHUNK_TOKENS, prefill_ms: round(tail),
      transfer_ms: round(transfer), lookup_ms: round(t.lookupMs, 2), retrieve_ms: round(t.retrieveMs), ttft_ms: round(transfer + tail),
      bytes_moved: moved, gbps: round(moved / transfer / 1e6, 3), prefill_tokens_per_s: Math.round(opts.questionTokens / (tail / 1000)),
      loaded_chunks: t.loaded, failed_chunks: t.failed + (chunks - t.hitChunks), host_chunks: t.hostChunks, disk_chunks: t.diskChunks, valkey_chunks: t.valkeyChunks,
      windows: t.windows, samples, verified,
    };
  };

  // The disk tier of daemon A, when this path and the temp dir allow one.
  let diskDir: string | null = null;
  if (kv.path === 'blocks') {
    const fs = statfsSync(tmpdir());
    if (fs.bavail * fs.bsize > bytes * 1.2 + GiB) diskDir = mkdtempSync(join(tmpdir(), 'kvtier-ttft-disk-'));
    else progress(`${label}: disk_hit skipped: ${tmpdir()} has less than ${fmtGiB(bytes * 1.2 + GiB)} free`);
  }
  const envA = diskDir === null ? env : { ...env, KVTIER_LOCAL_DISK: diskDir, KVTIER_MAX_LOCAL_DISK_SIZE: String((bytes * 1.1) / GiB + 0.1) };
  progress(`${label}: daemon A, storing ${chunks} chunks (${fmtGiB(bytes)}, ${kv.path} path) into host${diskDir === null ? '' : ', disk'} + Valkey`);
  let up = performance.now();
  const a = await daemon(envA);
  const pool = kv.path === 'blocks' ? `native ${fmtGiB(poolBytes(bytes))} pool, populated and locked before it serves` : `heap pool of ${fmtGiB(poolBytes(bytes))}`;
  progress(`${label}: daemon A warm and serving after ${((performance.now() - up) / 1000).toFixed(1)} s (${pool})`);
  let storeMs = 0;
  let used = 0;
  try {
    const wa = await KvtierClient.connect({ path: a.socket, clientKind: 'bench-ttft', fingerprint: { model: shape.name }, timeoutMs: 600_000 });
    try {
      await kv.attach(wa);
      const t0 = performance.now();
      const s = await kv.store(wa, tokens, chunks);
      storeMs = performance.now() - t0;
      if (s.stored !== chunks || s.committed !== chunks) {
        const host = ((await wa.stats()) as unknown as { host: Record<string, unknown> }).host;
        throw new Error(`${label}: stored ${s.stored}, committed to Valkey ${s.committed} of ${chunks} chunks (${s.failed} failed); host tier: ${JSON.stringify(host)}`);
      }
      used = await valkeyUsed(valkey);
      progress(`${label}: stored in ${(storeMs / 1000).toFixed(1)} s (${(bytes / storeMs / 1e6).toFixed(2)} GB/s to host + Valkey); Valkey holds ${fmtGiB(used)}`);
      // The first repetition checks the bytes; the others only time.
      const samples: Array<LoadTiming & { verified: boolean | null }> = [];
      for (let i = 0; i < opts.hostReps; i++) {
        progress(`${label}: host_hit ${i + 1}/${opts.hostReps}`);
        samples.push(await kv.load(wa, tokens, chunks, i === 0));
      }
      const mid = median(samples.map((t) => t.lookupMs + t.retrieveMs));
      rows.push(hitRow('host_hit', samples.find((t) => t.lookupMs + t.retrieveMs === mid)!, samples.length, samples[0].verified));
    } finally {
      await wa.close();
    }
  } finally {
    await stop(a);
  }

  if (diskDir !== null) {
    progress(`${label}: daemon A restarted on the same local_disk (host tier empty, disk warm): disk_hit`);
    try {
      const a2 = await daemon(envA);
      try {
        const w = await KvtierClient.connect({ path: a2.socket, clientKind: 'bench-ttft', fingerprint: { model: shape.name }, timeoutMs: 600_000 });
        try {
          await kv.attach(w);
          const t = await kv.load(w, tokens, chunks, true);
          rows.push(hitRow('disk_hit', t, 1, t.verified));
          const last = rows[rows.length - 1];
          progress(`${label}: disk_hit ${last.ttft_ms} ms (${last.gbps} GB/s)`);
        } finally {
          await w.close();
        }
      } finally {
        await stop(a2);
      }
    } finally {
      rmSync(diskDir, { recursive: true, force: true });
    }
  }

  progress(`${label}: daemon B (empty host tier, same Valkey): valkey_hit`);
  up = performance.now();
  const b = await daemon(env);
  progress(`${label}: daemon B warm and serving after ${((performance.now() - up) / 1000).toFixed(1)} s`);
  try {
    const wb = await KvtierClient.connect({ path: b.socket, clientKind: 'bench-ttft', fingerprint: { model: shape.name }, timeoutMs: 600_000 });
    try {
      await kv.attach(wb);
      const before = await linkStats(wb);
      // Counters over the Lookup and Retrieves alone (not the zeroing and the check around them).
      const pids = { daemon: b.child.pid, valkey_server: valkey.pid, bench: process.pid };
      let cpu0: ReturnType<typeof cpuSnapshot> = null, cpu1: ReturnType<typeof cpuSnapshot> = null;
      let t0 = 0, loadMs = 0;
      const t = await kv.load(wb, tokens, chunks, true, {
        start: () => { cpu0 = cpuSnapshot(pids); t0 = performance.now(); },
        end: () => { loadMs = performance.now() - t0; cpu1 = cpuSnapshot(pids); },
      });
      const after = await linkStats(wb);
      rows.push(hitRow('valkey_hit', t, 1, t.verified));
      const last = rows[rows.length - 1];
      if (before !== null && after !== null) last.link = linkUse(before, after, loadMs);
      last.cpu = cpuUse(cpu0, cpu1);
      progress(`${label}: valkey_hit ${last.ttft_ms} ms (${last.gbps} GB/s)`);
      last.server_reference = await serverReference(valkey.url, last.bytes_moved as number, tail, full, progress);
    } finally {
      await wb.close();
    }
  } finally {
    await stop(b);
  }
  return { rows, setup: { model: shape.name, context_tokens: context, bytes, store_ms: round(storeMs), store_gbps: round(bytes / storeMs / 1e6, 3), valkey_used_bytes: used, path: kv.path, window_chunks: kv.window } };
}
