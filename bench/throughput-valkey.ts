/**
 * Valkey tier throughput: store and retrieve GB/s of N chunks of each size
 * through ValkeyTier, beside valkey-benchmark SET/GET of the same value size
 * against the same server in the same run (the reference), so the ratio means
 * something on a noisy machine.
 *
 *   node dist/bench/throughput-valkey.js [--url valkey://...] [--sizes 4194304,33554432]
 *        [--total-mb 256] [--connections 4] [--segment-bytes 1048576] [--inflight 4]
 *        [--bulk-per-connection 1]
 *        [--serde naive] [--ref-clients 1] [--rounds 3] [--tls | --cluster] [--json]
 *
 * Without --url it starts its own valkey-server on a free loopback port;
 * with --cluster a 3-master loopback cluster instead, and the reference is
 * valkey-benchmark against the cluster (bench/valkey-cluster-reference.ts).
 * runValkeyThroughput() is what `kvtier bench throughput --tier valkey` calls.
 */

import { Decoder, GlideClient } from '@valkey/valkey-glide';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Slab } from '../src/tiers/host-memory.js';
import type { SerdeName } from '../src/tiers/serde.js';
import { parseSerde } from '../src/tiers/serde.js';
import type { DataPathName } from '../src/tiers/valkey-native.js';
import { ChunkId } from '../src/tiers/chunk-id.js';
import { ValkeyTier } from '../src/tiers/valkey-tier.js';
import { parseValkeyUrl } from '../src/tiers/valkey-url.js';
import { makeTestCertificates } from './tls-certs.js';
import { clusterReference } from './valkey-cluster-reference.js';
import { startValkey, startValkeyCluster, stopAllValkey, type ValkeyCluster } from './valkey-server.js';

export interface ValkeyThroughputOptions {
  /** Use this Valkey instead of starting one (it must allow FLUSHDB-free writes under the prefix). */
  url?: string;
  sizes?: number[];
  /** Bytes written per size; the chunk count is this / size, at least 4. */
  totalBytes?: number;
  connections?: number;
  segmentBytes?: number;
  /** ValkeyTier bulkPerConnection. */
  bulkPerConnection?: number;
  /** Chunks in flight at once. */
  inflight?: number;
  serde?: SerdeName;
  /** valkey-benchmark -c for the reference. */
  refClients?: number;
  /** Alternating tier/reference rounds; figures are medians. Default 3. */
  rounds?: number;
  /** Skip valkey-benchmark (it is not installed everywhere). */
  noReference?: boolean;
  /**
   * Start the bench's own valkey-server TLS-only (a throwaway CA) and run
   * both data paths and valkey-benchmark --tls against it. Not with `url`.
   */
  tls?: boolean;
  /**
   * Start the bench's own 3-master cluster and run both data paths and the
   * cluster reference against it. Not with `url` or `tls`.
   */
  cluster?: boolean;
}

export interface ValkeyThroughputRow {
  bench: 'throughput';
  tier: 'valkey';
  /** Which code moved the segment bytes: the addon's I/O threads or valkey-glide. */
  path: DataPathName;
  /** Masters the chunks went to: 1, or 3 with --cluster. */
  masters: number;
  chunk_bytes: number;
  chunks: number;
  rounds: number;
  store_gbps: number;
  /** First write of every key: includes the server's page faults on new memory. */
  cold_store_gbps: number;
  /** getInto() reused slabs, as the daemon reads into its host pool. */
  retrieve_gbps: number;
  /** get(): a fresh Buffer per chunk. */
  retrieve_fresh_gbps: number;
  settings: { connections: number; segment_bytes: number; inflight: number; bulk_per_connection: number; serde: SerdeName };
  /** valkey-benchmark with the same value size: the target. */
  reference: { what: string; store_gbps: number; retrieve_gbps: number } | null;
  /**
   * valkey-benchmark at the segment size with as many clients as the tier has
   * connections: what the server gives the segmented layout at best.
   */
  segment_reference: { what: string; store_gbps: number; retrieve_gbps: number } | null;
  /**
   * The client library alone: valkey-glide SET/GET of values the size the
   * tier sends (its segment, or the chunk when smaller), with as many clients
   * and requests in flight as the tier, no kvtier code in the path. The
   * ceiling kvtier can reach through glide on this machine.
   */
  glide_reference: { what: string; store_gbps: number; retrieve_gbps: number } | null;
  /**
   * The best valkey-benchmark gave in this run, per direction, over the chunk
   * size (-c 1) and the segment size at -c 1, 4 and 8: the server's ceiling.
   */
  best_reference: { store_gbps: number; store_what: string; retrieve_gbps: number; retrieve_what: string } | null;
  /**
   * LMCache's RedisConnector pattern on the same server and chunk size
   * (bench/lmcache_redis_pattern.py: redis-py, 8 threads, a metadata and a
   * kv_bytes key per chunk); null where redis-py is not installed.
   */
  lmcache_reference: { what: string; store_gbps: number; retrieve_gbps: number; misses?: number } | null;
  /** store_gbps / best_reference, retrieve_gbps / best_reference. */
  ratio: { store: number; retrieve: number } | null;
}

const MiB = 1 << 20;

function gbps(bytes: number, ms: number): number {
  return Math.round((bytes / ms / 1e6) * 1000) / 1000;
}

async function pool<T>(count: number, inflight: number, job: (i: number) => Promise<T>): Promise<T[]> {
  const out = new Array<T>(count);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      out[i] = await job(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(inflight, count) }, lane));
  return out;
}

const children = new Set<ReturnType<typeof execFile>>();

function run(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      children.delete(child);
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message} ${stderr}`));
      else resolve(stdout);
    });
    children.add(child);
  });
}

/** rps per test name from `valkey-benchmark --csv`. */
export function parseBenchmarkCsv(csv: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of csv.split('\n')) {
    const cells = line.split(',').map((c) => c.replace(/"/g, '').trim());
    if (cells.length >= 2 && cells[0] !== 'test' && Number.isFinite(Number(cells[1])) && cells[1] !== '') {
      out.set(cells[0].split(' ')[0].toUpperCase(), Number(cells[1]));
    }
  }
  return out;
}

/** bench/lmcache_redis_pattern.py through Debian's Python (python3-redis); null when redis-py is missing. */
async function lmcacheReference(url: string, size: number, n: number): Promise<ValkeyThroughputRow['lmcache_reference']> {
  const ep = parseValkeyUrl(url);
  if (ep.mode === 'cluster' || ep.tls || ep.password !== undefined) return null;
  const script = fileURLToPath(new URL('../../bench/lmcache_redis_pattern.py', import.meta.url));
  const a = ep.addresses[0];
  const hasRedisPy = await run('/usr/bin/python3', ['-c', 'import redis'], 30_000).then(() => true, () => false);
  if (!hasRedisPy) return null;
  return JSON.parse(await run('/usr/bin/python3', [script, a.host, String(a.port), String(size), String(n), '8'], 300_000)) as ValkeyThroughputRow['lmcache_reference'];
}

export async function reference(url: string, size: number, n: number, clients: number, caFile: string | null): Promise<ValkeyThroughputRow['reference']> {
  const ep = parseValkeyUrl(url);
  const addr = ep.addresses[0];
  const args = ['-h', addr.host, '-p', String(addr.port), '-t', 'set,get', '-d', String(size), '-n', String(n), '-c', String(clients), '-P', '1', '--csv'];
  if (caFile !== null) args.push('--tls', '--cacert', caFile);
  if (ep.password !== undefined) args.push('-a', ep.password);
  if (ep.mode === 'cluster') args.push('--cluster');
  const rps = parseBenchmarkCsv(await run('valkey-benchmark', args, 120_000));
  const shown = args.filter((a, i) => args[i - 1] !== '-a' && a !== '-a');
  return {
    what: `valkey-benchmark ${shown.join(' ')}`,
    store_gbps: gbps((rps.get('SET') ?? 0) * size, 1000),
    retrieve_gbps: gbps((rps.get('GET') ?? 0) * size, 1000),
  };
}

interface Pass {
  storeGbps: number;
  coldGbps: number;
  retrieveGbps: number;
  freshGbps: number;
}

/** One round through the tier: cold puts, timed re-puts, timed gets, verify, delete. */
async function tierPass(tier: ValkeyTier, size: number, n: number, inflight: number): Promise<Pass> {
  const payload = randomBytes(size);
  // A namespace per chunk size, as in the daemon (one model, one chunk size).
  const keys = Array.from({ length: n }, () => ChunkId.of(`bench-${size}`, randomBytes(16).toString('hex')));
  // Cold: the server allocates fresh memory for every value. Timed store:
  // the same keys again, as valkey-benchmark rewrites its one key, so both
  // sides measure a warm server.
  let t = performance.now();
  const cold = await pool(n, inflight, (i) => tier.put(keys[i], payload));
  const coldMs = performance.now() - t;
  if (!cold.every(Boolean)) throw new Error(`${cold.filter((s) => !s).length} of ${n} cold puts were skipped`);
  t = performance.now();
  const stored = await pool(n, inflight, (i) => tier.put(keys[i], payload));
  const storeMs = performance.now() - t;
  if (!stored.every(Boolean)) throw new Error(`${stored.filter((s) => !s).length} of ${n} puts were skipped`);
  // Retrieve as the daemon does: into host slabs that are reused (here one
  // pre-touched buffer per lane), so no page is faulted in per chunk.
  const slabs = Array.from({ length: inflight }, () => Buffer.alloc(size));
  const free = [...slabs];
  const allocate = (bytes: number): Slab | null => {
    const buf = free.pop();
    if (!buf || buf.length !== bytes) throw new Error(`bench slab pool: no ${bytes}-byte slab`);
    return { buf, release: () => free.push(buf) };
  };
  t = performance.now();
  const got = await pool(n, inflight, async (i) => {
    const slab = await tier.getInto(keys[i], allocate);
    const len = slab?.buf.length ?? -1;
    slab?.release();
    return len;
  });
  const getMs = performance.now() - t;
  if (!got.every((len) => len === size)) throw new Error(`${got.filter((l) => l !== size).length} of ${n} gets missed`);
  // And through get(), which allocates a fresh Buffer per chunk.
  t = performance.now();
  const fresh = await pool(n, inflight, async (i) => (await tier.get(keys[i]))?.length ?? -1);
  const freshMs = performance.now() - t;
  if (!fresh.every((len) => len === size)) throw new Error(`${fresh.filter((l) => l !== size).length} of ${n} gets missed`);
  if (!(await tier.get(keys[n - 1]))!.equals(payload)) throw new Error('retrieved bytes differ from the stored ones');
  await tier.delete(keys);
  return { storeGbps: gbps(n * size, storeMs), coldGbps: gbps(n * size, coldMs), retrieveGbps: gbps(n * size, getMs), freshGbps: gbps(n * size, freshMs) };
}

/** valkey-glide alone: `count` SETs then GETs of `valueBytes`, `inflight` at a time over `connections` clients. */
async function glideReference(url: string, valueBytes: number, count: number, connections: number, inflight: number): Promise<NonNullable<ValkeyThroughputRow['glide_reference']> | null> {
  const ep = parseValkeyUrl(url);
  if (ep.mode === 'cluster' || ep.tls || ep.password !== undefined) return null;
  const clients = await Promise.all(Array.from({ length: connections }, () =>
    GlideClient.createClient({ addresses: ep.addresses, databaseId: ep.databaseId, requestTimeout: 30_000, defaultDecoder: Decoder.Bytes })));
  try {
    const value = randomBytes(valueBytes);
    const keys = Array.from({ length: count }, (_, i) => `kvtier-bench-glide:${i}`);
    const run = async (op: (c: GlideClient, key: string) => Promise<unknown>): Promise<number> => {
      const t = performance.now();
      // Keep nothing: holding every reply would fault in count x valueBytes of fresh memory.
      await pool(count, inflight, async (i) => void (await op(clients[i % connections], keys[i])));
      return gbps(count * valueBytes, performance.now() - t);
    };
    await run((c, k) => c.set(k, value)); // cold: the server allocates
    const store = await run((c, k) => c.set(k, value));
    await run((c, k) => c.get(k)); // warm-up: the client's first reply buffers
    const retrieve = await run((c, k) => c.get(k));
    await clients[0].del(keys);
    return { what: `valkey-glide alone: ${count} x SET then GET of ${valueBytes} bytes, ${connections} clients, ${inflight} in flight`, store_gbps: store, retrieve_gbps: retrieve };
  } finally {
    for (const c of clients) c.close();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * Rounds alternate tier and reference, and each figure is the median of its
 * rounds: on a shared machine the load changes from second to second.
 */
export async function runValkeyThroughput(options: ValkeyThroughputOptions = {}): Promise<ValkeyThroughputRow[]> {
  const sizes = options.sizes ?? [4 * MiB, 32 * MiB];
  const totalBytes = options.totalBytes ?? 256 * MiB;
  const connections = options.connections ?? 4;
  const segmentBytes = options.segmentBytes ?? MiB;
  const inflight = options.inflight ?? 4;
  const serde = options.serde ?? 'naive';
  const rounds = options.rounds ?? 3;
  if (options.tls && options.url) throw new Error('--tls starts its own TLS valkey-server: do not give --url with it');
  if (options.cluster && (options.url || options.tls)) throw new Error('--cluster starts its own plain 3-master cluster: not with --url or --tls');
  const certs = options.tls ? makeTestCertificates() : null;
  const maxmemory = `${Math.ceil((totalBytes * 1.5) / MiB) + 256}mb`;
  // Every master gets the whole budget: a chunk's keys share one slot, and the slots of a run need not spread evenly.
  const cluster: ValkeyCluster | null = options.cluster ? await startValkeyCluster({ maxmemory, maxmemoryPolicy: 'allkeys-lru' }) : null;
  const own = options.url || cluster ? null : await startValkey({ maxmemory, maxmemoryPolicy: 'allkeys-lru', ...(certs ? { tls: certs.server } : {}) });
  const url = options.url ?? cluster?.url ?? own!.url;
  const masters = cluster?.nodes.length ?? 1;
  const benchmark = (size: number, count: number, clients: number): Promise<ValkeyThroughputRow['reference']> =>
    cluster ? clusterReference(cluster, size, count, clients, run, parseBenchmarkCsv) : reference(url, size, count, clients, caFile);
  const caFile = certs?.caFile ?? null;
  const rows: ValkeyThroughputRow[] = [];
  const bulkPerConnection = options.bulkPerConnection ?? 1;
  const paths: DataPathName[] = ['native', 'glide'];
  const tiers = new Map<DataPathName, ValkeyTier>();
  try {
    for (const dataPath of paths) {
      const tier = await ValkeyTier.create({
        url, connections, segmentBytes, serde, bulkPerConnection, keyPrefix: 'kvtier-bench', dataPath,
        ...(certs ? { tlsRootCertificates: readFileSync(certs.caFile) } : {}),
      });
      tiers.set(dataPath, tier);
      if (!tier.available) throw new Error(`valkey ${parseValkeyUrl(url).redacted} is not reachable`);
      if (tier.dataPath.path !== dataPath) throw new Error(`the ${dataPath} data path is unavailable here: ${tier.dataPath.reason}`);
    }
    for (const size of sizes) {
      const n = Math.max(4, Math.floor(totalBytes / size));
      const passes = new Map<DataPathName, Pass[]>(paths.map((p) => [p, []]));
      const refs: NonNullable<ValkeyThroughputRow['reference']>[] = [];
      const segRefs: NonNullable<ValkeyThroughputRow['reference']>[] = [];
      const sweeps: NonNullable<ValkeyThroughputRow['reference']>[][] = [];
      const glideRefs: NonNullable<ValkeyThroughputRow['glide_reference']>[] = [];
      const lmcacheRefs: NonNullable<ValkeyThroughputRow['lmcache_reference']>[] = [];
      const segmented = size > segmentBytes;
      const valueBytes = Math.min(size, segmentBytes);
      for (let r = 0; r < rounds; r++) {
        for (const p of paths) passes.get(p)!.push(await tierPass(tiers.get(p)!, size, n, inflight));
        if (!options.noReference) {
          refs.push((await benchmark(size, n, options.refClients ?? 1))!);
          const segCount = Math.ceil((n * size) / valueBytes);
          const sweep: NonNullable<ValkeyThroughputRow['reference']>[] = [];
          for (const c of [1, 4, 8]) sweep.push((await benchmark(valueBytes, segCount, c))!);
          sweeps.push(sweep);
          if (segmented) segRefs.push(sweep.find((x) => x.what.includes(` -c ${connections} `)) ?? sweep[1]);
        }
        const g = await glideReference(url, valueBytes, Math.ceil((n * size) / valueBytes), connections, Math.min(connections * bulkPerConnection, segmented ? inflight * Math.ceil(size / segmentBytes) : inflight));
        if (g) glideRefs.push(g);
        if (!options.noReference) {
          const l = await lmcacheReference(url, size, n);
          if (l) lmcacheRefs.push(l);
        }
      }
      const med = (xs: NonNullable<ValkeyThroughputRow['reference']>[]): ValkeyThroughputRow['reference'] =>
        xs.length ? { what: xs[0].what, store_gbps: median(xs.map((r) => r.store_gbps)), retrieve_gbps: median(xs.map((r) => r.retrieve_gbps)) } : null;
      // Each candidate's median over the rounds, then the best candidate per direction.
      const candidates = [med(refs), ...(sweeps[0] ?? []).map((_, i) => med(sweeps.map((sw) => sw[i])))].filter((x) => x !== null);
      const bestStore = candidates.reduce<NonNullable<ValkeyThroughputRow['reference']> | null>((b, x) => (b === null || x.store_gbps > b.store_gbps ? x : b), null);
      const bestRetrieve = candidates.reduce<NonNullable<ValkeyThroughputRow['reference']> | null>((b, x) => (b === null || x.retrieve_gbps > b.retrieve_gbps ? x : b), null);
      const best = bestStore && bestRetrieve
        ? { store_gbps: bestStore.store_gbps, store_what: bestStore.what, retrieve_gbps: bestRetrieve.retrieve_gbps, retrieve_what: bestRetrieve.what }
        : null;
      for (const p of paths) {
        const ps = passes.get(p)!;
        const row: ValkeyThroughputRow = {
          bench: 'throughput',
          tier: 'valkey',
          path: p,
          masters,
          chunk_bytes: size,
          chunks: n,
          rounds,
          store_gbps: median(ps.map((x) => x.storeGbps)),
          cold_store_gbps: median(ps.map((x) => x.coldGbps)),
          retrieve_gbps: median(ps.map((x) => x.retrieveGbps)),
          retrieve_fresh_gbps: median(ps.map((x) => x.freshGbps)),
          settings: { connections, segment_bytes: segmentBytes, inflight, bulk_per_connection: bulkPerConnection, serde },
          reference: med(refs),
          segment_reference: med(segRefs),
          glide_reference: med(glideRefs),
          best_reference: best,
          lmcache_reference: med(lmcacheRefs),
          ratio: null,
        };
        if (best && best.store_gbps > 0 && best.retrieve_gbps > 0) {
          row.ratio = {
            store: Math.round((row.store_gbps / best.store_gbps) * 100) / 100,
            retrieve: Math.round((row.retrieve_gbps / best.retrieve_gbps) * 100) / 100,
          };
        }
        rows.push(row);
      }
    }
  } finally {
    for (const t of tiers.values()) await t.close();
    await own?.stop();
    await cluster?.stop();
    certs?.remove();
  }
  return rows;
}

function table(rows: ValkeyThroughputRow[]): string {
  const lines = ['chunk MiB | masters | path   | store GB/s (best ref) | retrieve GB/s (best ref) | ratio store/retrieve'];
  for (const r of rows) {
    const ref = r.best_reference;
    lines.push(`${(r.chunk_bytes / MiB).toFixed(1).padStart(9)} | ${String(r.masters).padStart(7)} | ${r.path.padEnd(6)} | ${r.store_gbps.toFixed(2)} (${ref?.store_gbps.toFixed(2) ?? '-'}) | ${r.retrieve_gbps.toFixed(2)} (${ref?.retrieve_gbps.toFixed(2) ?? '-'}) | ${r.ratio ? `${r.ratio.store} / ${r.ratio.retrieve}` : '-'}`);
  }
  return lines.join('\n');
}

function parseArgs(argv: string[]): { options: ValkeyThroughputOptions; json: boolean } {
  const options: ValkeyThroughputOptions = {};
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const num = (): number => {
      const v = Number(val());
      if (!Number.isFinite(v) || v <= 0) throw new Error(`${a}: expected a positive number, got ${argv[i]}`);
      return v;
    };
    switch (a) {
      case '--json': json = true; break;
      case '--url': options.url = val(); break;
      case '--sizes': options.sizes = val().split(',').map(Number); break;
      case '--total-mb': options.totalBytes = num() * MiB; break;
      case '--connections': options.connections = num(); break;
      case '--segment-bytes': options.segmentBytes = num(); break;
      case '--inflight': options.inflight = num(); break;
      case '--bulk-per-connection': options.bulkPerConnection = num(); break;
      case '--serde': options.serde = parseSerde(val()); break;
      case '--ref-clients': options.refClients = num(); break;
      case '--rounds': options.rounds = num(); break;
      case '--no-reference': options.noReference = true; break;
      case '--tls': options.tls = true; break;
      case '--cluster': options.cluster = true; break;
      default: throw new Error(`unknown flag ${a}`);
    }
  }
  return { options, json };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { options, json } = parseArgs(process.argv.slice(2));
  // As kvtierd and `kvtier bench throughput --tier valkey` run it.
  const native = await import('../native/index.js').catch(() => null);
  if (native !== null && native.nativeAvailable()) native.tuneMalloc();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      for (const c of children) c.kill('SIGKILL');
      void stopAllValkey().finally(() => process.exit(130));
    });
  }
  runValkeyThroughput(options).then(
    (rows) => {
      process.stdout.write(json ? `${JSON.stringify({ bench: 'throughput', tier: 'valkey', rows })}\n` : `${table(rows)}\n`);
    },
    (e: unknown) => {
      process.stderr.write(`throughput-valkey: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
