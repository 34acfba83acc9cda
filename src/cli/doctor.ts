/**
 * `kvtier doctor`: what this machine gives kvtier, checked for real: the
 * config, the socket, the native addon with a small pinned pool probe,
 * CUDA, the local_disk directory, and Valkey reachability. Exit 1 when a check fails.
 */
import type { LoadedConfig } from '../config/load.js';
import { errorMessage } from '../errors.js';
import { KvtierClient } from '../protocol/client.js';
import { removeStaleSocket } from '../protocol/server.js';

type Verdict = 'ok' | 'warn' | 'fail';

export async function runDoctor(loaded: LoadedConfig): Promise<number> {
  const { config } = loaded;
  const lines: Array<[Verdict, string, string]> = [];
  lines.push(['ok', 'config', loaded.source ?? 'defaults (no config file)']);
  for (const w of loaded.warnings) lines.push(['warn', 'config', w]);

  try {
    const client = await KvtierClient.connect({ path: config.socketPath, clientKind: 'doctor', timeoutMs: 2000 });
    const started = process.hrtime.bigint();
    await client.ping();
    const us = Number(process.hrtime.bigint() - started) / 1000;
    lines.push(['ok', 'socket', `daemon ${client.hello?.serverVersion ?? '?'} answers at ${config.socketPath} (ping ${us.toFixed(0)} us)`]);
    await client.close();
  } catch (e) {
    try {
      await removeStaleSocket(config.socketPath);
      lines.push(['warn', 'socket', `no daemon at ${config.socketPath} (start one with: kvtier start)`]);
    } catch (e2) {
      lines.push(['fail', 'socket', `${errorMessage(e)}; ${errorMessage(e2)}`]);
    }
  }

  try {
    const native = await import('../../native/index.js');
    const info = native.nativeInfo();
    lines.push(['ok', 'native addon', `loaded; backend ${info.backend}`]);
    lines.push([info.deviceCount > 0 ? 'ok' : 'warn', 'cuda', `${info.cudaCompiled ? 'compiled in' : 'not compiled'}; ${info.reason}${info.deviceCount > 0 ? `; device copies: ${info.cudaCopy} (KVTIER_CUDA_COPY)` : ''}`]);
    const pool = new native.NativePool(64 * 1024 * 1024);
    const i = pool.info();
    lines.push([i.pinned ? 'ok' : 'warn', 'pinned memory', `64 MiB probe: ${i.detail}`]);
    pool.close();
  } catch (e) {
    lines.push(['warn', 'native addon', `not loaded (${errorMessage(e)}): heap memory and inline transfers only`]);
  }

  if (config.localDisk === null) {
    lines.push(['ok', 'local disk', 'not configured (local_disk)']);
  } else {
    try {
      const { diskDirReport } = await import('../tiers/disk-dir.js');
      const r = diskDirReport(config.localDisk, config.diskDirectIo);
      lines.push([r.ok ? 'ok' : 'fail', 'local disk', r.message]);
    } catch (e) {
      lines.push(['fail', 'local disk', `cannot be checked without the native addon: ${errorMessage(e)}`]);
    }
  }

  if (config.remoteUrl === null) {
    lines.push(['ok', 'valkey', 'not configured (host tier only)']);
  } else {
    const { createRemoteTier } = await import('../tiers/remote-from-config.js');
    const { createLogger } = await import('../log.js');
    const errors: string[] = [];
    const log = createLogger('error', {}, (line) => errors.push(line));
    const tier = await createRemoteTier(config, log);
    if (tier === null) lines.push(['fail', 'valkey', errors.join(' ').slice(0, 400)]);
    else {
      lines.push([tier.available ? 'ok' : 'fail', 'valkey', tier.available ? 'reachable' : 'not reachable']);
      lines.push(['ok', 'valkey data path', `${tier.dataPath.path}: ${tier.dataPath.reason}`]);
      await tier.close();
    }
  }

  const w = Math.max(...lines.map(([, k]) => k.length));
  for (const [v, k, msg] of lines) process.stdout.write(`${v.toUpperCase().padEnd(4)}  ${k.padEnd(w)}  ${msg}\n`);
  return lines.some(([v]) => v === 'fail') ? 1 : 0;
}
