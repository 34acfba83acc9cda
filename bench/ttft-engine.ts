/**
 * Engine mode of `kvtier bench ttft`: runs the Python reference engine
 * (bench/ttft_engine.py, with /usr/bin/python3, whose torch the engine uses)
 * as `ttft_engine.py --json [passthrough args]` and takes its rows. It may
 * print one JSON object with `rows`, or one JSON row (or object with rows)
 * per line; its stderr is passed through as progress. A missing script is a
 * clear error, not a crash.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { NotFoundError } from '../src/errors.js';
import { packageRoot } from './daemon-process.js';
import type { TtftRow } from './ttft-types.js';

export const ENGINE_PYTHON = '/usr/bin/python3';

export interface EngineResult {
  rows: TtftRow[];
  engine: { script: string; args: string[]; extra: Array<Record<string, unknown>> };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Rows out of the engine's stdout: one object with rows, or JSON lines. */
export function parseEngineOutput(stdout: string): { rows: TtftRow[]; extra: Array<Record<string, unknown>> } {
  const rows: TtftRow[] = [];
  const extra: Array<Record<string, unknown>> = [];
  const take = (v: unknown): void => {
    if (!isRecord(v)) throw new Error(`expected JSON objects from the engine, got ${JSON.stringify(v).slice(0, 100)}`);
    if (Array.isArray(v.rows)) {
      for (const r of v.rows) if (isRecord(r)) rows.push(r as TtftRow);
      const { rows: _rows, ...rest } = v;
      extra.push(rest);
    } else rows.push(v as TtftRow);
  };
  const whole = stdout.trim();
  try {
    take(JSON.parse(whole));
  } catch {
    for (const line of whole.split('\n')) {
      const t = line.trim();
      if (t.startsWith('{')) take(JSON.parse(t));
    }
  }
  return { rows, extra };
}

export async function runEngineMode(args: string[], progress: (msg: string) => void, script = join(packageRoot(), 'bench/ttft_engine.py')): Promise<EngineResult> {
  if (!existsSync(script)) throw new NotFoundError(`the reference engine ${script} (engine mode runs it with ${ENGINE_PYTHON}; it is not in this checkout)`);
  progress(`running ${ENGINE_PYTHON} ${script} --json ${args.join(' ')}`);
  const child = spawn(ENGINE_PYTHON, [script, '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => process.stderr.write(d));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (c) => resolve(c));
  });
  if (code !== 0) throw new Error(`${script} exited with ${code}`);
  const parsed = parseEngineOutput(out);
  if (parsed.rows.length === 0) throw new Error(`${script} printed no rows`);
  return { rows: parsed.rows, engine: { script, args, extra: parsed.extra } };
}
