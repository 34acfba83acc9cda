/**
 * Starts kvtierd as a child process for benches (and tests that kill it):
 * a separate process, so the daemon's event loop is not the one measuring.
 * Requires the built CLI (dist/src/cli/main.js, made by `npm run build`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface DaemonProcess {
  socket: string;
  child: ChildProcess;
  stderr(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json not found');
    dir = up;
  }
  return dir;
}

/** `env` holds KVTIER_* settings; the socket goes to a fresh temp dir unless given. */
/**
 * Starts `kvtier start` and waits until it serves and, unless `opts.warm` is
 * false, until its host pool is warm (the daemon serves before that; a
 * store into a still-warming pool may be skipped).
 */
export async function spawnDaemon(env: Record<string, string> = {}, socket?: string, opts: { warm?: boolean } = {}): Promise<DaemonProcess> {
  const cli = join(packageRoot(), 'dist/src/cli/main.js');
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);
  const dir = socket === undefined ? mkdtempSync(join(tmpdir(), 'kvtier-')) : null;
  const path = socket ?? join(dir!, 'kvtier.sock');
  const child = spawn(process.execPath, [cli, 'start', '--socket', path], {
    env: { ...process.env, KVTIER_CONFIG_FILE: '', LMCACHE_CONFIG_FILE: '', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    if (err.length > 1 << 20) err = err.slice(-(1 << 19));
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 20_000;
  const ready = opts.warm === false ? 'kvtierd serving' : 'host pool warm';
  while (!err.includes(ready)) {
    if (child.exitCode !== null) throw new Error(`kvtierd exited with ${child.exitCode}: ${err}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`kvtierd did not start within 20 s: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    socket: path,
    child,
    stderr: () => err,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      if (dir !== null) rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}
