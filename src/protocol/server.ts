/**
 * The Unix-socket server.
 *
 * Socket file rules: created with the configured mode (0600 by default) by
 * narrowing the umask around listen(), so there is no window in which it is
 * world-accessible; a stale file left by a dead daemon is replaced; a file
 * with a live daemon behind it is never stolen (SocketInUseError).
 * close() stops accepting, lets every in-flight request finish, ends the
 * connections, waits until each has closed and released what it held, then
 * unlinks the socket.
 * Each accepted socket's peer credentials (SO_PEERCRED) are read once, here,
 * and handed to its Connection: RegisterKv maps only files that uid owns.
 */
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { Socket as NetSocket, createConnection, createServer, type Server, type Socket } from 'node:net';
import { ErrorCode, KvtierError, SocketInUseError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { Connection, type ClosedConnectionCounts, type ConnectionContext } from './connection.js';
import { socketFd, type PeerCredentials, type PeerReader } from './peer.js';

export interface SocketServerOptions {
  path: string;
  mode: number;
  context: ConnectionContext;
  logger: Logger;
  /** Reads a socket's peer credentials (the native addon); null: unknown, RegisterKv refuses. */
  peerReader?: PeerReader | null;
}

export class SocketServer {
  readonly #opts: SocketServerOptions;
  readonly #connections = new Set<Connection>();
  #server: Server | null = null;
  #nextId = 1;
  readonly #closed: ClosedConnectionCounts = { badFrame: 0, idle: 0 };

  constructor(opts: SocketServerOptions) {
    this.#opts = opts;
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Connections closed by the daemon, by reason, since start. */
  get closedConnections(): Readonly<ClosedConnectionCounts> {
    return this.#closed;
  }

  async listen(): Promise<void> {
    const { path, mode } = this.#opts;
    await removeStaleSocket(path);
    const server = createServer({ allowHalfOpen: false, pauseOnConnect: true }, (accepted) => {
      const peer = this.#peer(accepted);
      let conn: Connection | null = null;
      const socket = readingIntoShared(accepted, (data) => conn!.receive(data));
      conn = new Connection(this.#nextId++, socket, this.#opts.context, {
        peer,
        closed: this.#closed,
        onClose: (c) => this.#connections.delete(c),
      });
      this.#connections.add(conn);
    });
    const oldMask = process.umask(0o777 & ~mode);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(oldMask);
    }
    chmodSync(path, mode);
    server.on('error', (e) => this.#opts.logger.error('server error', { error: e.message }));
    this.#server = server;
  }

  #peer(socket: Socket): PeerCredentials | null {
    const read = this.#opts.peerReader;
    if (read == null) return null;
    const fd = socketFd(socket);
    if (fd === null) return null;
    try {
      return read(fd);
    } catch (e) {
      this.#opts.logger.warn('cannot read the peer credentials of a connection', { error: errorMessage(e) });
      return null;
    }
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (server === null) return;
    this.#server = null;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    await Promise.all([...this.#connections].map((c) => c.idle()));
    // The server's own count no longer tracks the connections (the handles
    // moved, readingIntoShared): wait for each one's close and release.
    const connections = [...this.#connections];
    for (const c of connections) c.end();
    await Promise.all(connections.map((c) => c.closed));
    await closed;
    try {
      unlinkSync(this.#opts.path);
    } catch {
      // Already gone: nothing to clean.
    }
  }
}

/**
 * Every connection's reads land in this one buffer (net's `onread`), each
 * consumed before the next read: Node otherwise reads into a fresh 64 KiB
 * ArrayBuffer per read, 512 KiB of garbage per 128K-token Lookup, and V8
 * collected for that external memory every ~40 ms (framing.ts).
 */
const SHARED_READ = Buffer.allocUnsafeSlow(256 << 10);

/**
 * `accepted` (paused, not yet read) as a socket that reads into SHARED_READ
 * and hands each read to `onRead`. net.Server has no `onread` option, so the
 * accepted handle moves to a Socket made with one: `_handle` is Node's
 * undocumented handle field (peer.ts reads its fd the same way), and the
 * empty `accepted` is destroyed at once, which settles the server's
 * connection count. Where Node has no such field the socket is used as it
 * is, its 'data' chunks fed to the same `onRead`.
 */
function readingIntoShared(accepted: Socket, onRead: (data: Buffer) => void): Socket {
  const raw = accepted as unknown as { _handle?: object | null };
  const handle = raw._handle;
  if (handle === null || typeof handle !== 'object') {
    accepted.on('data', onRead);
    accepted.resume();
    return accepted;
  }
  raw._handle = null;
  accepted.destroy();
  return new NetSocket({
    handle,
    readable: true,
    writable: true,
    allowHalfOpen: false,
    onread: { buffer: SHARED_READ, callback: (n: number, buf: Uint8Array) => { onRead((buf as Buffer).subarray(0, n)); } },
  } as unknown as ConstructorParameters<typeof NetSocket>[0]);
}

/** Unlinks `path` if it is a socket nobody answers on; throws if a daemon is live there. */
export async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return;
  }
  if (!isSocket) throw new KvtierError(ErrorCode.KVT_SOCKET_IN_USE, `${path} exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    const timer = setTimeout(() => {
      probe.destroy();
      resolve(true);
    }, 1000);
    probe.once('connect', () => {
      clearTimeout(timer);
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  if (live) throw new SocketInUseError(path);
  unlinkSync(path);
}
