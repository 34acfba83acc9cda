/**
 * Starts a real daemon in the test process on a real Unix socket in a temp
 * dir. Config comes from the real loader with overrides, so tests go through
 * the same checks as `kvtier start`.
 *
 * Malformed input must never be KVT_INTERNAL: every test daemon's logger
 * records the connection's 'internal error' logs (whatever logger the test
 * passes), and stop() throws when there were any, so each test that stops
 * its daemon fails on one.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type KvtierConfig } from '../../src/config/load.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { createLogger, silentLogger, type LogFields, type Logger } from '../../src/log.js';
import type { RemoteTier } from '../../src/tiers/tier.js';
import { KvtierClient, type ClientOptions } from '../../src/protocol/client.js';

export interface TestDaemon {
  daemon: Daemon;
  socket: string;
  dir: string;
  config: KvtierConfig;
  /** 'internal error' logs so far (each one also makes stop() throw). */
  readonly internalErrors: LogFields[];
  connect(opts?: Omit<ClientOptions, 'path'>): Promise<KvtierClient>;
  stop(): Promise<void>;
}

export async function startTestDaemon(
  overrides: Record<string, unknown> = {},
  opts: { remote?: RemoteTier | null; logger?: Logger; socket?: string; /** false: return while the pool still warms. */ warm?: boolean } = {},
): Promise<TestDaemon> {
  const dir = mkdtempSync(join(tmpdir(), 'kvtier-test-'));
  const socket = opts.socket ?? join(dir, 'kvtier.sock');
  const { config } = loadConfig({ env: {}, overrides: { socket_path: socket, max_local_cpu_size: 0.25, ...overrides } });
  const internalErrors: LogFields[] = [];
  const logger = recordInternalErrors(opts.logger ?? (process.env.KVTIER_TEST_LOG ? createLogger('debug') : silentLogger), internalErrors);
  const daemon = await startDaemon({ config, logger, remote: opts.remote });
  if (opts.warm !== false) await daemon.whenWarm();
  const clients: KvtierClient[] = [];
  return {
    daemon,
    socket,
    dir,
    config,
    internalErrors,
    connect: async (o = {}) => {
      const c = await KvtierClient.connect({ path: socket, timeoutMs: 10_000, ...o });
      clients.push(c);
      return c;
    },
    stop: async () => {
      for (const c of clients) c.destroy();
      await daemon.close();
      rmSync(dir, { recursive: true, force: true });
      if (internalErrors.length > 0) {
        throw new Error(`the daemon answered KVT_INTERNAL ${internalErrors.length} time(s); first: ${JSON.stringify(internalErrors[0])}`);
      }
    },
  };
}

/** `inner`, with every 'internal error' log (of it or any child) appended to `into`. */
function recordInternalErrors(inner: Logger, into: LogFields[], base: LogFields = {}): Logger {
  return {
    debug: (m, f) => inner.debug(m, f),
    info: (m, f) => inner.info(m, f),
    warn: (m, f) => inner.warn(m, f),
    error: (m, f) => {
      if (m === 'internal error') into.push({ ...base, ...f });
      inner.error(m, f);
    },
    child: (fields) => recordInternalErrors(inner.child(fields), into, { ...base, ...fields }),
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
