/**
 * `kvtier bench <name>`: each bench prints a table for a person, or one JSON
 * object with --json. The benches themselves live in bench/.
 */
import type { Command } from 'commander';
import { runLookupBench } from '../../bench/lookup.js';

function progress(json: boolean): (msg: string) => void {
  return (msg) => {
    if (process.stderr.isTTY || !json) process.stderr.write(`bench: ${msg}\n`);
  };
}

function int(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`expected a positive integer for ${name}, got ${v}`);
    return n;
  };
}

export function registerBench(program: Command): void {
  const bench = program.command('bench').description('measure kvtier on this machine (JSON with --json)');

  bench
    .command('lookup')
    .description('socket round trip and full-prefix lookup latency')
    .option('--tokens <n>', 'prompt length in tokens', int('--tokens'), 131072)
    .option('--iterations <n>', 'measured lookups', int('--iterations'), 400)
    .option('-s, --socket <path>', 'use a running daemon instead of starting one')
    .option('--json', 'print one JSON object')
    .action(async (opts: { tokens: number; iterations: number; socket?: string; json?: boolean }) => {
      const r = await runLookupBench(opts, progress(opts.json === true));
      if (opts.json === true) process.stdout.write(`${JSON.stringify(r)}\n`);
      else {
        process.stdout.write(`lookup of ${r.tokens} tokens (${r.chunks_hit} chunks hit), ${r.iterations} iterations\n`);
        process.stdout.write(`  socket rtt      p50 ${r.rtt_us.p50} us   p99 ${r.rtt_us.p99} us\n`);
        process.stdout.write(`  lookup (client) p50 ${r.lookup_us.p50} us   p99 ${r.lookup_us.p99} us\n`);
        process.stdout.write(`  lookup (daemon) p50 ${r.daemon_lookup_us.p50} us   p99 ${r.daemon_lookup_us.p99} us\n`);
      }
    });
}
