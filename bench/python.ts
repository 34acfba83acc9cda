/**
 * The benches' Python side: scripts in bench/ run with Debian's
 * /usr/bin/python3 (where python3-torch and -protobuf live, not the first
 * python3 on PATH), each printing one JSON object as its last line.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from './daemon-process.js';

export const PYTHON = '/usr/bin/python3';

/** Runs bench/<script> with `args`; the parsed last stdout line, or an Error naming the exit and stderr's tail. */
export async function runBenchPython<T>(script: string, args: string[]): Promise<T> {
  if (!existsSync(PYTHON)) throw new Error(`${PYTHON} not found`);
  const child = spawn(PYTHON, [join(packageRoot(), 'bench', script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`bench/${script} exited with ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`);
  return JSON.parse(out.trim().split('\n').at(-1)!) as T;
}
