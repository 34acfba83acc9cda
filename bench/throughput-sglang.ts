/**
 * `kvtier bench throughput --tier host --source sglang`: SGLang host pages
 * through KVTierHiCacheStorage into a real daemon, block form (shm staging,
 * ids on the socket) beside inline form (bytes in frames), and beside the
 * two copies block form cannot avoid, measured in the same run by the
 * Python side (bench/sglang_throughput.py, /usr/bin/python3 with torch).
 */
import { spawnDaemon } from './daemon-process.js';
import { runBenchPython } from './python.js';

export interface SglangFormRow {
  form: 'block' | 'inline';
  transfer_mode: string;
  store_gbps: number;
  retrieve_gbps: number;
  verified: boolean;
  samples_ms: { store: number[]; load: number[] };
  cpu_s_per_gb: { store: { client: number; daemon: number }; retrieve: { client: number; daemon: number } };
}

export interface SglangThroughputResult {
  model: string;
  layout: string;
  page_tokens: number;
  page_bytes: number;
  pages_per_batch: number;
  rounds: number;
  rows: SglangFormRow[];
  reference: { what: string; store_gbps: number; retrieve_gbps: number; samples_ms: { store: number[]; load: number[] } };
  ratio: {
    block_vs_reference: { store: number; retrieve: number };
    block_vs_inline: { store: number; retrieve: number };
    inline_vs_block_cpu: { store: number | null; retrieve: number | null };
  };
}

export async function runSglangThroughput(opts: { pages?: number; rounds?: number } = {}): Promise<SglangThroughputResult> {
  const pages = opts.pages ?? 16;
  const rounds = opts.rounds ?? 7;
  // Room for every round of both forms and the warm-up (8 MiB pages), so nothing is evicted mid-bench.
  const poolGiB = Math.max(1, Math.ceil((2 * (rounds + 1) * pages * 8) / 1024) + 1);
  const d = await spawnDaemon({ KVTIER_MAX_LOCAL_CPU_SIZE: String(poolGiB) });
  try {
    return await runBenchPython<SglangThroughputResult>('sglang_throughput.py', [d.socket, String(pages), String(rounds), String(d.child.pid)]);
  } finally {
    await d.stop();
  }
}
