/**
 * Starts a real daemon in the test process on a real Unix socket in a temp
 * dir. Config comes from the real loader with overrides, so tests go through
 * the same checks as `kvtier start`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type KvtierConfig } from '../../src/config/load.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { createLogger, silentLogger, type Logger } from '../../src/log.js';
import type { RemoteTier } from '../../src/manager/chunk-manager.js';
import { KvtierClient, type ClientOptions } from '../../src/protocol/client.js';

export interface TestDaemon {
  daemon: Daemon;
  socket: string;
  dir: string;
  config: KvtierConfig;
  connect(opts?: Omit<ClientOptions, 'path'>): Promise<KvtierClient>;
  stop(): Promise<void>;
}

export async function startTestDaemon(
  overrides: Record<string, unknown> = {},
  opts: { remote?: RemoteTier | null; logger?: Logger; socket?: string } = {},
): Promise<TestDaemon> {
  const dir = mkdtempSync(join(tmpdir(), 'kvtier-test-'));
  const socket = opts.socket ?? join(dir, 'kvtier.sock');
  const { config } = loadConfig({ env: {}, overrides: { socket_path: socket, max_local_cpu_size: 0.25, ...overrides } });
  const logger = opts.logger ?? (process.env.KVTIER_TEST_LOG ? createLogger('debug') : silentLogger);
  const daemon = await startDaemon({ config, logger, remote: opts.remote });
  const clients: KvtierClient[] = [];
  return {
    daemon,
    socket,
    dir,
    config,
    connect: async (o = {}) => {
      const c = await KvtierClient.connect({ path: socket, timeoutMs: 10_000, ...o });
      clients.push(c);
      return c;
    },
    stop: async () => {
      for (const c of clients) c.destroy();
      await daemon.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `cond` until true or `ms` pass (then throws with `what`). */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
