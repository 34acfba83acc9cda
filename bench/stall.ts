/**
 * `kvtier bench stall`: does loading a long prompt's KV from Valkey stall
 * the engine's step loop? One valkey-server and two daemons that share only
 * it (A stores, B loads, so the chunks cannot come from B's host tier); the
 * reference engine (bench/stall_engine.py, /usr/bin/python3) decodes a batch
 * of short requests before and during the load and times every step, while
 * it stops the valkey-server (SIGSTOP, by the pid given here) to make the
 * load last seconds. The baseline is the same batch's steps in the same run.
 */
import { spawnDaemon, type DaemonProcess } from './daemon-process.js';
import { runBenchPython } from './python.js';
import { startValkey } from './valkey-server.js';

export interface StallOptions {
  /** The long prompt's tokens; default 8192. */
  contextTokens?: number;
  /** KV heads of the reference model; default 8 (4 MiB float32 chunks). */
  kvHeads?: number;
  /** Short requests decoding all along; default 4. */
  shorts?: number;
  /** Seconds of baseline steps; default 3. */
  baselineS?: number;
  /** Each SIGSTOP of valkey-server, ms; default 800 (below the Valkey tier's ~1.1 s request ceiling). */
  pauseMs?: number;
  /** SIGSTOPs during the load; default 3. */
  pauses?: number;
  /** valkey-server running between two SIGSTOPs, ms; default 200 (requests caught by one stop finish before the next). */
  gapMs?: number;
}

type StepMs = { p50: number; p99: number; max: number; steps: number };

export interface StallResult {
  bench: 'stall';
  baseline: { step_ms: StepMs };
  during_load: {
    step_ms: StepMs;
    chunks_loaded: number;
    load_ms: number | null;
    loaded_tokens: number;
    failed_blocks: number;
    valkey_stopped_ms: number;
    valkey_stops: number;
  };
  logits_match: boolean;
  target: { bound_ms: number; ratio: number; what: string };
  engine: Record<string, unknown>;
  wall_s: number;
}

export async function runStallBench(opts: StallOptions = {}, progress: (msg: string) => void = () => {}): Promise<StallResult> {
  const context = opts.contextTokens ?? 8192;
  const kvHeads = opts.kvHeads ?? 8;
  // A float32 chunk of the reference model (4 layers, head_dim 64) is kvHeads/2 MiB: room for the prompt twice over.
  const poolGiB = String(Math.ceil((2 * (context / 256) * (kvHeads / 2)) / 1024) + 1);
  const valkey = await startValkey();
  const daemons: DaemonProcess[] = [];
  try {
    const env = { KVTIER_REMOTE_URL: valkey.url, KVTIER_MAX_LOCAL_CPU_SIZE: poolGiB };
    daemons.push(await spawnDaemon(env), await spawnDaemon(env));
    const pid = valkey.pid;
    if (pid === undefined) throw new Error('valkey-server is not running');
    progress(`valkey-server pid ${pid}, daemons A and B share it; running bench/stall_engine.py (${context}-token prompt)`);
    const args = [daemons[0].socket, daemons[1].socket, String(pid), '--context', String(context), '--kv-heads', String(kvHeads),
      '--shorts', String(opts.shorts ?? 4), '--baseline-s', String(opts.baselineS ?? 3),
      '--pause-ms', String(opts.pauseMs ?? 800), '--pauses', String(opts.pauses ?? 3), '--gap-ms', String(opts.gapMs ?? 200)];
    return await runBenchPython<StallResult>('stall_engine.py', args);
  } finally {
    await Promise.all(daemons.map((d) => d.stop()));
    await valkey.stop();
  }
}
