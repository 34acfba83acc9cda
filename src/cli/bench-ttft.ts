/**
 * `kvtier bench ttft` flags, in their own file so src/cli/bench.ts stays a
 * list of benches. Model mode unless --endpoint or --mode engine; arguments
 * after the options in engine mode go to bench/ttft_engine.py unchanged.
 */
import { InvalidArgumentError, type Command } from 'commander';
import type { TtftOptions } from '../../bench/ttft.js';
import { UsageError } from '../errors.js';
import { DEFAULT_MFU, MODEL_DEFAULTS } from './ttft-defaults.js';

function tokenList(v: string): number[] {
  return v.split(',').map((s) => {
    const m = /^(\d+)([kK]?)$/.exec(s.trim());
    if (m === null) throw new InvalidArgumentError(`expected token counts like 8K,32K,131072, got ${s}`);
    return Number(m[1]) * (m[2] === '' ? 1 : 1024);
  });
}

function positive(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`expected a positive number for ${name}, got ${v}`);
    return n;
  };
}

interface Flags {
  mode?: string;
  model?: string;
  contexts?: number[];
  endpoint?: string;
  questionTokens: number;
  regionMib: number;
  hostReps: number;
  inline?: boolean;
  mfu: number;
  prefillTokensPerS?: number;
  docs: number;
  maxTokens: number;
  flushUrl?: string;
  timeoutS: number;
  plot?: string;
  json?: boolean;
}

export function registerTtft(bench: Command): void {
  bench
    .command('ttft')
    .description('time to first token: model mode (real KV bytes, modelled compute), --endpoint URL, or --mode engine')
    .option('--mode <mode>', 'model, endpoint or engine (default: endpoint when --endpoint is given, else model)')
    .option('--model <names>', `model mode: shapes, comma-separated (default ${MODEL_DEFAULTS.models.join(',')}); endpoint mode: the served model name`)
    .option('--contexts <list>', 'context lengths in tokens, e.g. 8K,32K,128K (default 8K,32K,128K)', tokenList)
    .option('--endpoint <url>', 'OpenAI-compatible server, e.g. http://127.0.0.1:8000')
    .option('--question-tokens <n>', 'model mode: new tokens after the cached context', positive('--question-tokens'), 64)
    .option('--region-mib <n>', 'model mode: size of the worker KV region in shm (chunks cycle through it)', positive('--region-mib'), 1024)
    .option('--host-reps <n>', 'model mode: host_hit repetitions (median reported)', positive('--host-reps'), 3)
    .option('--inline', 'model mode: run contexts above the native pool limit (4 GiB) on the inline path instead of skipping them')
    .option('--mfu <f>', 'model mode: modelled fraction of H100 peak bf16 FLOPS', positive('--mfu'), DEFAULT_MFU)
    .option('--prefill-tokens-per-s <n>', 'model mode: flat modelled prefill rate instead of the FLOPs model', positive('--prefill-tokens-per-s'))
    .option('--docs <n>', 'endpoint mode: documents per context length', positive('--docs'), 4)
    .option('--max-tokens <n>', 'endpoint mode: tokens generated per answer', positive('--max-tokens'), 8)
    .option('--flush-url <url>', 'endpoint mode: POSTed before a third round (e.g. http://127.0.0.1:8000/reset_prefix_cache)')
    .option('--timeout-s <n>', 'endpoint mode: per-request timeout', positive('--timeout-s'), 600)
    .option('--plot <file>', 'write an SVG chart of TTFT against context length')
    .option('--json', 'print one JSON object')
    .allowUnknownOption(true)
    .allowExcessArguments(true)
    .action(async (flags: Flags, cmd: Command) => {
      const mode = flags.mode ?? (flags.endpoint !== undefined ? 'endpoint' : 'model');
      const usage: (message: string) => never = (message) => {
        throw new UsageError(`bench ttft: ${message}`);
      };
      if (mode !== 'model' && mode !== 'endpoint' && mode !== 'engine') usage(`expected model, endpoint or engine for --mode, got ${mode}`);
      if (mode !== 'engine' && cmd.args.length > 0) usage(`unknown arguments ${cmd.args.join(' ')} (only --mode engine passes arguments through)`);
      const { formatTtft, runTtftBench } = await import('../../bench/ttft.js');
      const opts: TtftOptions = {
        mode,
        models: flags.model !== undefined ? flags.model.split(',') : mode === 'model' ? MODEL_DEFAULTS.models : [],
        contexts: flags.contexts ?? MODEL_DEFAULTS.contexts,
        questionTokens: flags.questionTokens,
        regionMiB: flags.regionMib,
        hostReps: Math.round(flags.hostReps),
        inline: flags.inline === true,
        mfu: flags.mfu,
        prefillTokensPerS: flags.prefillTokensPerS ?? null,
        endpoint: flags.endpoint ?? null,
        docs: Math.round(flags.docs),
        maxTokens: Math.round(flags.maxTokens),
        flushUrl: flags.flushUrl ?? null,
        timeoutMs: flags.timeoutS * 1000,
        engineArgs: cmd.args,
        plot: flags.plot ?? null,
      };
      const t0 = Date.now();
      const progress = (msg: string): void => {
        process.stderr.write(`bench ttft [${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
      };
      const r = await runTtftBench(opts, progress);
      process.stdout.write(flags.json === true ? `${JSON.stringify(r)}\n` : formatTtft(r));
    });
}
