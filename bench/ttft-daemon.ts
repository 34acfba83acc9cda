/**
 * kvtierd child processes for the TTFT bench. Like ./daemon-process.ts, but
 * a daemon whose pool is several GiB may take longer than 20 s to start on a
 * loaded machine (the pool is populated and page-locked before it serves),
 * so the wait is 90 s; a daemon killed by a signal at start (an abort in the
 * native addon) is reported at once with its stderr.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot, type DaemonProcess } from './daemon-process.js';

const START_TIMEOUT_MS = 90_000;

export async function startBenchDaemon(env: Record<string, string>): Promise<DaemonProcess> {
  const cli = join(packageRoot(), 'dist/src/cli/main.js');
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);
  const dir = mkdtempSync(join(tmpdir(), 'kvtier-ttft-'));
  const socket = join(dir, 'kvtier.sock');
  const child = spawn(process.execPath, [cli, 'start', '--socket', socket], {
    env: { ...process.env, KVTIER_CONFIG_FILE: '', LMCACHE_CONFIG_FILE: '', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-(1 << 16));
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + START_TIMEOUT_MS;
  // The daemon serves while its pool still warms, and skips stores that find
  // no ready room: a bench that stores a whole context waits for warm.
  while (!err.includes('host pool warm')) {
    if (child.exitCode !== null || child.signalCode !== null) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`kvtierd ended at start (${child.exitCode ?? child.signalCode}): ${err.trim()}`);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`kvtierd did not start within ${START_TIMEOUT_MS / 1000} s: ${err.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    socket,
    child,
    stderr: () => err,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const code = await exited;
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}
