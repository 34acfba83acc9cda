/**
 * Real valkey-server processes for tests and benches, on free loopback ports.
 *
 * Each server runs in the foreground as our child (so a SIGKILL is a real
 * crash), in its own temp dir, with `--save '' --appendonly no`. Ports come
 * from binding port 0 first. Every wait is bounded. Servers are stopped by
 * stopAllValkey() (call it in afterAll) and killed on process exit anyway.
 */

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ValkeyServerOptions {
  requirepass?: string;
  /** e.g. '64mb' */
  maxmemory?: string;
  /** e.g. 'allkeys-lru' */
  maxmemoryPolicy?: string;
  /** Extra `--name value` arguments. */
  args?: string[];
  /** Serve TLS only on the port (plain port off); PEM files. */
  tls?: { certFile: string; keyFile: string; caFile: string };
  /** Internal: cluster-enabled node. */
  cluster?: boolean;
}

export interface ValkeyServer {
  readonly host: string;
  readonly port: number;
  /** valkey://[:password@]127.0.0.1:port (valkeys:// with tls) */
  readonly url: string;
  readonly dir: string;
  readonly running: boolean;
  /** The running server's process id (a bench stops it with SIGSTOP); undefined when it is not running. */
  readonly pid: number | undefined;
  /** SIGKILL, waits for the exit (a crash, not a shutdown). */
  kill(): Promise<void>;
  /** Starts the same server again on the same port (empty: no persistence). */
  restart(): Promise<void>;
  /** Kills the server and removes its dir. */
  stop(): Promise<void>;
  /** valkey-cli against this server; resolves with stdout. */
  cli(args: string[]): Promise<string>;
}

export interface ValkeyCluster {
  readonly nodes: ValkeyServer[];
  /** valkey-cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3 */
  readonly url: string;
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';
const live = new Set<ChildProcess>();
const cleanups = new Set<() => Promise<void>>();

process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, HOST, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export function valkeyCli(port: number, args: string[], password?: string, timeoutMs = 15_000): Promise<string> {
  const auth = password ? ['-a', password, '--no-auth-warning'] : [];
  return new Promise((resolve, reject) => {
    execFile('valkey-cli', ['-h', HOST, '-p', String(port), ...auth, ...args], { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`valkey-cli ${args.join(' ')}: ${err.message} ${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Resolves once the port answers PING with any RESP reply (NOAUTH counts). */
async function waitForPing(port: number, timeoutMs: number, useTls = false): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = useTls ? tls.connect({ port, host: HOST, rejectUnauthorized: false }) : net.connect(port, HOST);
      const t = setTimeout(() => { s.destroy(); resolve(false); }, 500);
      s.once(useTls ? 'secureConnect' : 'connect', () => s.write('PING\r\n'));
      s.once('data', (d) => { clearTimeout(t); s.destroy(); resolve(d[0] === 0x2b || d[0] === 0x2d); });
      s.once('error', () => { clearTimeout(t); resolve(false); });
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`valkey-server on port ${port} did not answer within ${timeoutMs} ms`);
}

export async function startValkey(options: ValkeyServerOptions = {}, port?: number): Promise<ValkeyServer> {
  const p = port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'kvtier-valkey-'));
  const ports = options.tls
    ? ['--port', '0', '--tls-port', String(p), '--tls-cert-file', options.tls.certFile, '--tls-key-file', options.tls.keyFile,
      '--tls-ca-cert-file', options.tls.caFile, '--tls-auth-clients', 'no']
    : ['--port', String(p)];
  const args = ['--bind', HOST, ...ports, '--dir', dir, '--save', '', '--appendonly', 'no', '--proto-max-bulk-len', '1gb', '--loglevel', 'warning'];
  if (options.requirepass) args.push('--requirepass', options.requirepass);
  if (options.maxmemory) args.push('--maxmemory', options.maxmemory);
  if (options.maxmemoryPolicy) args.push('--maxmemory-policy', options.maxmemoryPolicy);
  if (options.cluster) args.push('--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf'), '--cluster-node-timeout', '2000');
  if (options.args) args.push(...options.args);

  let child: ChildProcess | undefined;
  const launch = async (): Promise<void> => {
    const c = spawn('valkey-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    live.add(c);
    c.once('exit', () => live.delete(c));
    const spawnError = new Promise<never>((_, reject) => c.once('error', reject));
    spawnError.catch(() => undefined);
    await Promise.race([waitForPing(p, 10_000, !!options.tls), spawnError]);
  };
  const kill = async (): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGKILL');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  };
  await launch();
  const auth = options.requirepass ? `:${encodeURIComponent(options.requirepass)}@` : '';
  const server: ValkeyServer = {
    host: HOST,
    port: p,
    url: `${options.tls ? 'valkeys' : 'valkey'}://${auth}${HOST}:${p}`,
    dir,
    get running() {
      return !!child && child.exitCode === null && child.signalCode === null;
    },
    get pid() {
      return server.running ? child!.pid : undefined;
    },
    kill,
    restart: async () => {
      await kill();
      await launch();
    },
    stop: async () => {
      cleanups.delete(server.stop);
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
    cli: (cliArgs) => valkeyCli(p, options.tls ? ['--tls', '--cacert', options.tls.caFile, ...cliArgs] : cliArgs, options.requirepass),
  };
  cleanups.add(server.stop);
  return server;
}

export async function startValkeyCluster(options: ValkeyServerOptions = {}): Promise<ValkeyCluster> {
  const nodes: ValkeyServer[] = [];
  try {
    for (let i = 0; i < 3; i++) nodes.push(await startValkey({ ...options, cluster: true }));
    await valkeyCli(nodes[0].port, ['--cluster', 'create', ...nodes.map((n) => `${HOST}:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], options.requirepass, 30_000);
    const deadline = Date.now() + 20_000;
    for (;;) {
      const infos = await Promise.all(nodes.map((n) => n.cli(['cluster', 'info'])));
      if (infos.every((s) => s.includes('cluster_state:ok'))) break;
      if (Date.now() > deadline) throw new Error('cluster did not reach cluster_state:ok within 20 s');
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (e) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw e;
  }
  const auth = options.requirepass ? `:${encodeURIComponent(options.requirepass)}@` : '';
  return {
    nodes,
    url: `valkey-cluster://${auth}${nodes.map((n) => `${HOST}:${n.port}`).join(',')}`,
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}

/** Stops every server this process started. */
export async function stopAllValkey(): Promise<void> {
  await Promise.all([...cleanups].map((f) => f()));
}
