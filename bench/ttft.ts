/**
 * `kvtier bench ttft`: time to first token on long repeated prompts.
 *
 *   --mode model     (default) real daemons, Valkey and KV bytes for a named
 *                    model shape; prefill compute modelled (./ttft-model.ts)
 *   --endpoint URL   measured against an OpenAI-compatible server (./ttft-endpoint.ts)
 *   --mode engine    rows of the Python reference engine (./ttft-engine.ts)
 *
 * One JSON object with --json, else a table; --plot FILE writes an SVG of
 * TTFT against context length; progress goes to stderr.
 */
import { UsageError } from '../src/errors.js';
import { runEndpointMode } from './ttft-endpoint.js';
import { runEngineMode } from './ttft-engine.js';
import { runModelMode } from './ttft-model.js';
import { writeTtftPlot } from './plot-ttft.js';
import { H100_PEAK_TFLOPS } from './ttft-shapes.js';
import type { TtftResult, TtftRow } from './ttft-types.js';

export interface TtftOptions {
  mode: 'model' | 'endpoint' | 'engine';
  /** Model mode: shape names; endpoint mode: the served model name (first entry). */
  models: string[];
  contexts: number[];
  questionTokens: number;
  regionMiB: number;
  hostReps: number;
  /** Model mode: run contexts above the native pool limit on the inline path. */
  inline: boolean;
  mfu: number;
  prefillTokensPerS: number | null;
  endpoint: string | null;
  docs: number;
  maxTokens: number;
  flushUrl: string | null;
  timeoutMs: number;
  engineArgs: string[];
  plot: string | null;
}

/**
 * Both shapes at 8K, 32K and 128K; what cannot run here (memory, or the
 * 4 GiB native pool limit) is skipped and listed with its reason.
 */
export { MODEL_DEFAULTS } from '../src/cli/ttft-defaults.js';

export async function runTtftBench(opts: TtftOptions, progress: (msg: string) => void): Promise<TtftResult> {
  const started = performance.now();
  let result: TtftResult;
  if (opts.mode === 'endpoint') {
    if (opts.endpoint === null || opts.models.length === 0) throw new UsageError('endpoint mode needs --endpoint URL and --model NAME');
    const r = await runEndpointMode({
      endpoint: opts.endpoint, model: opts.models[0], contexts: opts.contexts, docs: opts.docs,
      maxTokens: opts.maxTokens, flushUrl: opts.flushUrl, timeoutMs: opts.timeoutMs,
    }, progress);
    result = { bench: 'ttft', mode: 'endpoint', rows: r.rows, endpoint: r.endpoint, pattern: r.pattern, compute: 'measured: a real server answered every request' };
  } else if (opts.mode === 'engine') {
    const r = await runEngineMode(opts.engineArgs, progress);
    result = { bench: 'ttft', mode: 'engine', rows: r.rows, engine: r.engine };
  } else {
    const r = await runModelMode({
      models: opts.models, contexts: opts.contexts, questionTokens: opts.questionTokens, regionBytes: opts.regionMiB * 2 ** 20,
      hostReps: opts.hostReps, inline: opts.inline, prefill: { tokensPerS: opts.prefillTokensPerS, mfu: opts.mfu, peakTflops: H100_PEAK_TFLOPS },
    }, progress);
    result = {
      bench: 'ttft', mode: 'model', rows: r.rows,
      compute: r.compute,
      note: 'compute modelled, bytes real: KV bytes of the named shape moved through kvtierd (socket protocol, native block gather/scatter, Valkey); prefill time is not measured but modelled as stated in `compute`',
      shapes: r.shapes, skipped: r.skipped, setup: r.setup,
    };
  }
  result.elapsed_s = Math.round((performance.now() - started) / 100) / 10;
  if (opts.plot !== null) {
    const note = opts.mode === 'model' ? 'compute modelled (H100 FLOPs model), KV bytes moved for real on this machine' : opts.mode === 'endpoint' ? `measured against ${opts.endpoint}` : 'rows of the reference engine';
    writeTtftPlot(opts.plot, result.rows, `kvtier TTFT (${opts.mode} mode)`, note);
    result.plot = opts.plot;
  }
  return result;
}

const cell = (v: unknown): string => (v === null || v === undefined ? '-' : typeof v === 'number' ? String(v) : String(v));

export function formatTtft(r: TtftResult): string {
  const cols: Array<[string, (row: TtftRow) => unknown]> = r.mode === 'model'
    ? [['model', (x) => x.model], ['context', (x) => x.context_tokens], ['case', (x) => x.case], ['ttft ms', (x) => x.ttft_ms],
      ['path', (x) => x.path], ['transfer ms', (x) => x.transfer_ms], ['prefill ms*', (x) => x.prefill_ms], ['GiB moved', (x) => Math.round(Number(x.bytes_moved) / 2 ** 30 * 100) / 100],
      ['GB/s', (x) => x.gbps], ['chunks ok/failed', (x) => `${cell(x.loaded_chunks)}/${cell(x.failed_chunks)}`], ['bytes verified', (x) => x.verified]]
    : [['model', (x) => x.model], ['context', (x) => x.context_tokens], ['case', (x) => x.case], ['ttft ms', (x) => x.ttft_ms]];
  const table = [cols.map(([h]) => h), ...r.rows.map((row) => cols.map(([, f]) => cell(f(row))))];
  const widths = cols.map((_, i) => Math.max(...table.map((t) => t[i].length)));
  const lines = table.map((t) => t.map((v, i) => v.padStart(widths[i])).join('  '));
  const out = [`kvtier bench ttft, ${r.mode} mode, ${r.elapsed_s} s`, ...lines];
  if (typeof r.compute === 'string') out.push(`* ${r.compute}`);
  if (Array.isArray(r.skipped)) for (const s of r.skipped as Array<{ model: string; context_tokens: number; reason: string }>) out.push(`skipped ${s.model} at ${s.context_tokens} tokens: ${s.reason}`);
  if (typeof r.plot === 'string') out.push(`plot: ${r.plot}`);
  return `${out.join('\n')}\n`;
}
