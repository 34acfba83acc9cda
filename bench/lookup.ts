/**
 * `kvtier bench lookup`: socket round trip and full-prefix lookup latency.
 *
 * rtt: an empty request (Ping) over the Unix socket, measured in blocks
 * alternating with echo_us, a plain Node Unix-socket echo of a frame of the
 * same size (bench/echo-floor.ts): the floor, in the same run. lookup: a
 * Lookup of a `tokens`-token prompt whose every chunk is in the host tier
 * (hashing of the whole prompt included), as the vLLM scheduler issues it,
 * lease and all; ranks_lookup_us is one Lookup for every rank of a TP engine
 * of `ranks_per_lookup` ranks (Hello.lookup_ranks: every rank's chunks in
 * the host tier, a lease per rank), measured in blocks alternating with the
 * one-rank lookup_us, so ranks_over_one compares them in the same run;
 * python_lookup_us is the same Lookup from the Python client
 * (integrations/python, /usr/bin/python3), null where that cannot run. The
 * daemon runs in its own process. Both sides are warmed up first (JIT): a
 * daemon in service has answered many requests already.
 *
 * rtt_us, echo_us and the lookups run where the OS puts them; placed_us
 * measures them again with the bench, the echo server and the daemon pinned
 * (same CPU, then two CPUs: placement.ts says why), null where nothing can
 * be pinned. On the 2-vCPU VMs this project builds on, a lookup whose two
 * processes sit on two vCPUs waits for the other vCPU to wake, sometimes for
 * milliseconds: the unpinned p99 is mostly where the OS put the processes.
 * chain_us is the prompt's prefix-hash chain in this process, hashed in
 * full (SHA-256, memo off) and from the chain memo, alternating: what the
 * daemon's memo (chain_memo_mb) saves a warm Lookup; chain_memo is the
 * daemon's own memo counts after the run.
 */
import { randomInt } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KvtierClient } from '../src/protocol/client.js';
import { encodeFrame } from '../src/protocol/messages.js';
import { packTokens } from '../src/chunking/tokens.js';
import { spawnDaemon } from './daemon-process.js';
import { runBenchPython } from './python.js';
import { startEchoFloor } from './echo-floor.js';
import { nowUs, percentiles } from './stats.js';
import { canPin, place, unpin, type Placement } from './placement.js';
import { hashTokenChunks } from '../src/chunking/prefix-hash.js';
import type { ChainMemoStats } from '../native/index.js';

export interface LookupBenchOptions {
  tokens: number;
  iterations: number;
  socket?: string;
  /** Ranks of the TP engine whose one Lookup is measured beside the one-rank Lookup. */
  ranks: number;
}

type Percentiles = { p50: number; p99: number; max: number };

export interface LookupBenchResult {
  bench: 'lookup';
  tokens: number;
  chunks_hit: number;
  iterations: number;
  rtt_us: Percentiles;
  /** The floor: a plain Node Unix-socket echo of a Ping-sized frame, in the same run. */
  echo_us: Percentiles;
  echo_frame_bytes: number;
  lookup_us: Percentiles;
  daemon_lookup_us: Percentiles;
  ranks_per_lookup: number;
  /** One Lookup answering for every rank of a TP=ranks_per_lookup engine, same prompt, same run. */
  ranks_lookup_us: Percentiles;
  /** ranks_lookup_us / lookup_us. */
  ranks_over_one: { p50: number; p99: number };
  /** rtt, echo and both lookups again with the processes pinned: one CPU for all, or the bench on another CPU than the servers. */
  placed_us: Record<Placement, {
    rtt_us: Percentiles; echo_us: Percentiles; rtt_over_echo: number;
    lookup_us: Percentiles; ranks_lookup_us: Percentiles; ranks_over_one: { p50: number; p99: number };
  }> | null;
  /** The prompt's chain hashed in this process: every chunk by SHA-256, and every chunk from the memo. */
  chain_us: { sha256: Percentiles; memo: Percentiles } | null;
  /** The daemon's chain memo after the run (kvtier stats' chainMemo). */
  chain_memo: ChainMemoStats | null;
  /** The Python client's Lookup of the same prompt; null without /usr/bin/python3 and protobuf. */
  python_lookup_us: { p50: number; p99: number; max: number; chunks_hit: number } | null;
  python_error?: string;
}

const ratio = (a: number, b: number): number => Math.round((a / b) * 100) / 100;
/** A TP engine's lookup against a one-rank lookup's, at p50 and p99. */
const overOne = (all: Percentiles, one: Percentiles): { p50: number; p99: number } => ({ p50: ratio(all.p50, one.p50), p99: ratio(all.p99, one.p99) });

const RTT_BLOCKS = 10;
const LOOKUP_BLOCKS = 10;
const WARMUP_ROUND_TRIPS = 5000;

export async function runLookupBench(opts: LookupBenchOptions, progress: (msg: string) => void = () => {}): Promise<LookupBenchResult> {
  // The client process gets the daemon's malloc settings, so its own fresh
  // 512 KiB frames do not dominate what is measured.
  const native = await import('../native/index.js').catch(() => null);
  if (native !== null && native.nativeAvailable()) native.tuneMalloc();
  const daemon = opts.socket === undefined ? await spawnDaemon({ KVTIER_MAX_LOCAL_CPU_SIZE: '1' }) : null;
  const socket = opts.socket ?? daemon!.socket;
  const frame = encodeFrame({ id: 1 + WARMUP_ROUND_TRIPS + opts.iterations * 5, ping: {} });
  const echo = await startEchoFloor(frame);
  let client: KvtierClient | null = null;
  const rankClients: KvtierClient[] = [];
  try {
    // The Python client's fingerprint defaults (block 16, tp/pp size 1): both clients share one namespace.
    client = await KvtierClient.connect({ path: socket, clientKind: 'bench', fingerprint: { model: 'bench-lookup', blockSize: 16, tpSize: 1, ppSize: 1 } });
    const chunkSize = client.hello!.chunkSize;
    const tokens = packTokens(Array.from({ length: opts.tokens }, () => randomInt(0, 128_256)));
    const chunks = Math.floor(opts.tokens / chunkSize);
    progress(`storing ${chunks} chunks`);
    const payload = Buffer.alloc(1024, 7);
    const stored = await client.store({ address: { tokens }, chunks: Array.from({ length: chunks }, () => payload) });
    await stored.committed;

    progress('measuring rtt and the echo floor');
    for (let i = 0; i < WARMUP_ROUND_TRIPS; i++) {
      await client.ping();
      await echo.roundTrip();
    }
    const roundTrips = async (perBlock: number): Promise<{ rtt: number[]; floor: number[] }> => {
      const rtt: number[] = [];
      const floor: number[] = [];
      for (let b = 0; b < RTT_BLOCKS; b++) {
        for (let i = 0; i < perBlock; i++) {
          const t = nowUs();
          await echo.roundTrip();
          floor.push(nowUs() - t);
        }
        for (let i = 0; i < perBlock; i++) {
          const t = nowUs();
          await client!.ping();
          rtt.push(nowUs() - t);
        }
      }
      return { rtt, floor };
    };
    const { rtt, floor } = await roundTrips(Math.ceil((opts.iterations * 5) / RTT_BLOCKS));
    const ranks = opts.ranks;
    progress(`storing ${chunks} chunks for each of ${ranks} ranks`);
    const engine = { model: 'bench-lookup', blockSize: 16, tpSize: ranks, ppSize: 1 };
    for (let r = 0; r < ranks; r++) {
      const c = await KvtierClient.connect({ path: socket, clientKind: 'bench', fingerprint: { ...engine, tpRank: r } });
      rankClients.push(c);
      await (await c.store({ address: { tokens }, chunks: Array.from({ length: chunks }, () => payload) })).committed;
    }
    const scheduler = await KvtierClient.connect({
      path: socket, clientKind: 'bench', fingerprint: engine, lookupRanks: Array.from({ length: ranks }, (_, r) => ({ tpRank: r, ppRank: 0 })),
    });
    rankClients.push(scheduler);

    progress(`measuring lookup, one rank and ${ranks} ranks`);
    const address = { tokens };
    let hit = 0;
    const one = async (): Promise<number> => {
      const t = nowUs();
      const r = await client!.lookup(address);
      const us = nowUs() - t;
      hit = r.hitChunks;
      await client!.releaseLease(r.leaseId);
      return us;
    };
    const all = async (): Promise<number> => {
      const t = nowUs();
      const r = await scheduler.lookup(address);
      const us = nowUs() - t;
      if (r.hitChunks !== hit || r.leaseIds.length !== ranks) throw new Error(`a ${ranks}-rank lookup hit ${r.hitChunks} chunks with ${r.leaseIds.length} leases, expected ${hit} and ${ranks}`);
      await Promise.all(r.leaseIds.map((id) => scheduler.releaseLease(Number(id))));
      return us;
    };
    for (let i = 0; i < 50; i++) {
      await one();
      await all();
    }
    // Alternating blocks of one-rank and all-rank lookups, so that both see the same noise.
    const lookups = async (perBlock: number): Promise<{ one: number[]; all: number[] }> => {
      const o: number[] = [];
      const a: number[] = [];
      for (let b = 0; b < LOOKUP_BLOCKS; b++) {
        for (let i = 0; i < perBlock; i++) o.push(await one());
        for (let i = 0; i < perBlock; i++) a.push(await all());
      }
      return { one: o, all: a };
    };
    const perLookupBlock = Math.ceil(opts.iterations / LOOKUP_BLOCKS);
    const { one: lookup, all: rankLookup } = await lookups(perLookupBlock);
    // The same round trips and lookups with the processes pinned (placement.ts).
    let placed: LookupBenchResult['placed_us'] = null;
    if (daemon !== null && canPin()) {
      const pids = [process.pid, daemon.child.pid!, echo.pid];
      try {
        const out: Partial<NonNullable<LookupBenchResult['placed_us']>> = {};
        for (const where of ['same_cpu', 'cross_cpu'] as const) {
          place(where, process.pid, [daemon.child.pid!, echo.pid]);
          await roundTrips(100);
          const m = await roundTrips(Math.ceil((opts.iterations * 2) / RTT_BLOCKS));
          const r = percentiles(m.rtt);
          const e = percentiles(m.floor);
          const l = await lookups(perLookupBlock);
          const one = percentiles(l.one);
          const all = percentiles(l.all);
          out[where] = {
            rtt_us: r, echo_us: e, rtt_over_echo: ratio(r.p50, e.p50),
            lookup_us: one, ranks_lookup_us: all, ranks_over_one: overOne(all, one),
          };
        }
        placed = out as NonNullable<LookupBenchResult['placed_us']>;
      } finally {
        unpin(pids);
      }
    }
    const stats = (await client.stats()) as { lookupLatencyUs: Percentiles; chainMemo?: ChainMemoStats | null };
    const chain = native !== null && native.nativeAvailable() ? chainTimes(native, tokens, chunkSize, opts.iterations) : null;
    progress('measuring the Python client\'s lookup');
    const py = await pythonLookup(socket, tokens, chunkSize, opts.iterations);
    const lookupUs = percentiles(lookup);
    const ranksUs = percentiles(rankLookup);
    return {
      bench: 'lookup', tokens: opts.tokens, chunks_hit: hit, iterations: lookup.length,
      rtt_us: percentiles(rtt), echo_us: percentiles(floor), echo_frame_bytes: frame.length,
      lookup_us: lookupUs, daemon_lookup_us: stats.lookupLatencyUs,
      ranks_per_lookup: ranks, ranks_lookup_us: ranksUs, ranks_over_one: overOne(ranksUs, lookupUs),
      placed_us: placed,
      chain_us: chain,
      chain_memo: stats.chainMemo ?? null,
      python_lookup_us: py.result, ...(py.error !== undefined ? { python_error: py.error } : {}),
    };
  } finally {
    await client?.close();
    for (const c of rankClients) await c.close();
    await echo.stop();
    if (daemon !== null) await daemon.stop();
  }
}

/**
 * The prompt's chain in this process (the daemon's code and the same
 * 32-byte root size), alternating a memo-less hash of every chunk with a
 * memo-served one. The memo is this process's, not the daemon's.
 */
function chainTimes(native: typeof import('../native/index.js'), tokens: Uint8Array, chunkSize: number, iterations: number): { sha256: Percentiles; memo: Percentiles } {
  const root = Buffer.alloc(32, 1);
  const full: number[] = [];
  const memo: number[] = [];
  const run = (into: number[] | null): void => {
    const t = nowUs();
    hashTokenChunks(root, tokens, chunkSize, false, undefined, native.chainHashes);
    into?.push(nowUs() - t);
  };
  try {
    for (let i = 0; i < Math.min(iterations, 200); i++) {
      native.setChainMemo(0);
      run(full);
      native.setChainMemo(32 << 20);
      run(null);
      run(memo);
    }
  } finally {
    native.setChainMemo(0);
  }
  return { sha256: percentiles(full), memo: percentiles(memo) };
}

async function pythonLookup(socket: string, tokens: Uint8Array, chunkSize: number, iterations: number): Promise<{ result: LookupBenchResult['python_lookup_us']; error?: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'kvtier-pylookup-'));
  try {
    const file = join(dir, 'tokens.u32');
    writeFileSync(file, tokens);
    return { result: await runBenchPython<NonNullable<LookupBenchResult['python_lookup_us']>>('lookup_python.py', [socket, file, String(chunkSize), String(iterations)]) };
  } catch (e) {
    return { result: null, error: e instanceof Error ? e.message : String(e) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
