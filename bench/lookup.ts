/**
 * `kvtier bench lookup`: socket round trip and full-prefix lookup latency.
 *
 * rtt: an empty request (Ping) over the Unix socket. lookup: a Lookup of a
 * `tokens`-token prompt whose every chunk is in the host tier (hashing of
 * the whole prompt included), as the vLLM scheduler issues it, lease and
 * all. The daemon runs in its own process.
 */
import { randomInt } from 'node:crypto';
import { KvtierClient } from '../src/protocol/client.js';
import { packTokens } from '../src/chunking/tokens.js';
import { spawnDaemon } from './daemon-process.js';
import { nowUs, percentiles } from './stats.js';

export interface LookupBenchOptions {
  tokens: number;
  iterations: number;
  socket?: string;
}

export interface LookupBenchResult {
  bench: 'lookup';
  tokens: number;
  chunks_hit: number;
  iterations: number;
  rtt_us: { p50: number; p99: number; max: number };
  lookup_us: { p50: number; p99: number; max: number };
  daemon_lookup_us: { p50: number; p99: number; max: number };
}

export async function runLookupBench(opts: LookupBenchOptions, progress: (msg: string) => void = () => {}): Promise<LookupBenchResult> {
  // The client process gets the daemon's malloc settings, so its own fresh
  // 512 KiB frames do not dominate what is measured.
  const native = await import('../native/index.js').catch(() => null);
  if (native !== null && native.nativeAvailable()) native.tuneMalloc();
  const daemon = opts.socket === undefined ? await spawnDaemon({ KVTIER_MAX_LOCAL_CPU_SIZE: '1' }) : null;
  let client: KvtierClient | null = null;
  try {
    client = await KvtierClient.connect({ path: opts.socket ?? daemon!.socket, clientKind: 'bench', fingerprint: { model: 'bench-lookup' } });
    const chunkSize = client.hello!.chunkSize;
    const tokens = packTokens(Array.from({ length: opts.tokens }, () => randomInt(0, 128_256)));
    const chunks = Math.floor(opts.tokens / chunkSize);
    progress(`storing ${chunks} chunks`);
    const payload = Buffer.alloc(1024, 7);
    const stored = await client.store({ address: { tokens }, chunks: Array.from({ length: chunks }, () => payload) });
    await stored.committed;

    progress('measuring rtt');
    for (let i = 0; i < 500; i++) await client.ping();
    const rtt: number[] = [];
    for (let i = 0; i < opts.iterations * 5; i++) {
      const t = nowUs();
      await client.ping();
      rtt.push(nowUs() - t);
    }
    progress('measuring lookup');
    const address = { tokens };
    let hit = 0;
    for (let i = 0; i < 50; i++) await client.releaseLease((await client.lookup(address)).leaseId);
    const lookup: number[] = [];
    for (let i = 0; i < opts.iterations; i++) {
      const t = nowUs();
      const r = await client.lookup(address);
      lookup.push(nowUs() - t);
      hit = r.hitChunks;
      await client.releaseLease(r.leaseId);
    }
    const stats = (await client.stats()) as { lookupLatencyUs: { p50: number; p99: number; max: number } };
    return {
      bench: 'lookup', tokens: opts.tokens, chunks_hit: hit, iterations: opts.iterations,
      rtt_us: percentiles(rtt), lookup_us: percentiles(lookup), daemon_lookup_us: stats.lookupLatencyUs,
    };
  } finally {
    await client?.close();
    if (daemon !== null) await daemon.stop();
  }
}
