/**
 * Usage errors exit 2, as the README promises for every command.
 * Regression: `kvtier bench ...` with a bad flag value exited 1; so did a
 * bench's own option checks (unknown model shape, context length) before
 * they threw UsageError.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../bench/daemon-process.js';

const cli = join(packageRoot(), 'dist/src/cli/main.js');

function run(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: { ...process.env, KVTIER_CONFIG_FILE: '', LMCACHE_CONFIG_FILE: '' }, timeout: 30_000 }, (err, _stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stderr });
    });
  });
}

describe('kvtier bench usage errors exit 2 with the reason', () => {
  it.each([
    [['bench', 'lookup', '--tokens', 'x'], /expected a positive integer for --tokens, got x/],
    [['bench', 'throughput', '--tier', 'tape'], /expected host, disk or valkey for --tier, got tape/],
    [['bench', 'throughput', '--tier', 'disk', '--sizes', '4,x'], /expected MiB sizes like 4,32 for --sizes, got 4,x/],
    [['bench', 'throughput', '--tier', 'host', '--source', 'gpu'], /expected auto, shm, cuda or sglang for --source, got gpu/],
    [['bench', 'throughput', '--tier', 'host', '--cuda-copy', 'fast'], /expected staged or kernel for --cuda-copy, got fast/],
    [['bench', 'throughput', '--tier', 'valkey', '--sizes', 'a'], /expected MiB sizes like 4,32 for --sizes, got a/],
    [['bench', 'throughput'], /required option '--tier <tier>' not specified/],
    [['bench', 'ttft', '--mode', 'nope'], /expected model, endpoint or engine for --mode, got nope/],
    [['bench', 'ttft', '--contexts', '8Q'], /expected token counts like 8K,32K,131072, got 8Q/],
    [['bench', 'ttft', 'extra'], /unknown arguments extra/],
    [['bench', 'nosuch'], /unknown command 'nosuch'/],
    [['bench', 'stall', '--kv-heads', '3'], /expected 1, 2, 4 or 8 \(a divisor of the model's 8 query heads\) for --kv-heads, got 3/],
    [['bench', 'stall', '--context', '200'], /expected more than one 256-token chunk for --context, got 200/],
    [['bench', 'stall', '--pause-ms', '-1'], /expected a positive integer for --pause-ms, got -1/],
    [['bench', 'ttft', '--model', 'nosuch'], /unknown model shape nosuch/],
    [['bench', 'ttft', '--contexts', '100'], /expected context lengths that are multiples of 256, got 100/],
    [['bench', 'ttft', '--mode', 'endpoint'], /endpoint mode needs --endpoint URL and --model NAME/],
  ])('kvtier %j', async (args, message) => {
    const r = await run(args as string[]);
    expect(r.stderr).toMatch(message);
    expect(r.code).toBe(2);
  }, 30_000);
});
