/**
 * Shutdown waits for every connection, and only for what is bounded.
 *
 * Regression: shutdown hung when a worker disconnected while a Store waited
 * for its commit. server.close() and the connection's own release both wait
 * in Connection.idle(); a single resolver kept only the last waiter, so
 * close() never resolved. The commit is held by a real valkey-server stopped
 * with SIGSTOP (the write-behind put to it cannot finish until SIGCONT or the
 * request timeout).
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame, PROTOCOL_VERSION } from '../../src/protocol/messages.js';
import { packTokens } from '../../src/chunking/tokens.js';
import { startValkey, stopAllValkey, type ValkeyServer } from '../../bench/valkey-server.js';
import { startTestDaemon, waitFor } from '../helpers/daemon.js';

describe('shutdown while a commit is pending', () => {
  let valkey: ValkeyServer;
  let pid = 0;
  beforeAll(async () => {
    valkey = await startValkey();
    pid = Number(/process_id:(\d+)/.exec(await valkey.cli(['INFO', 'server']))![1]);
  });
  afterAll(async () => {
    if (pid > 0) process.kill(pid, 'SIGCONT');
    await stopAllValkey();
  });

  it('a worker disconnecting during close() does not leave close() waiting forever', async () => {
    const d = await startTestDaemon({ remote_url: valkey.url, blocking_timeout_secs: 30 });
    let stopped = false;
    try {
      const w = await d.connect({ fingerprint: { model: 'shutdown' } });
      const tokens = packTokens(Array.from({ length: 256 }, (_, i) => i));
      await w.ping();
      process.kill(pid, 'SIGSTOP');
      stopped = true;
      const s = await w.store({ address: { tokens }, chunks: [Buffer.alloc(64 * 1024, 9)] });
      expect(s.copied.storedChunks).toBe(1);
      // The commit is waiting on the stopped Valkey: the Store is still in flight.
      await waitFor(() => d.daemon.manager.writeBehindStats().inFlight > 0, 'the write to Valkey to be in flight');

      const closing = d.daemon.close();
      let closed = false;
      void closing.then(() => {
        closed = true;
      });
      // close() now waits for the connection's Store; the worker goes away meanwhile.
      await new Promise((r) => setTimeout(r, 100));
      expect(closed).toBe(false);
      w.destroy();
      await new Promise((r) => setTimeout(r, 200));
      // Valkey comes back: the commit finishes, and close() must follow.
      process.kill(pid, 'SIGCONT');
      stopped = false;
      const bound = new Promise<'hung'>((r) => setTimeout(() => r('hung'), 10_000).unref());
      expect(await Promise.race([closing.then(() => 'closed' as const), bound])).toBe('closed');
    } finally {
      if (stopped) process.kill(pid, 'SIGCONT');
      await Promise.race([d.stop(), new Promise((r) => setTimeout(r, 2000).unref())]);
    }
  }, 30_000);
});

describe('shutdown with a client that stops reading', () => {
  it('close() returns only after every connection has closed, so nothing is dispatched against a closed manager', async () => {
    const d = await startTestDaemon({});
    const sock = connect(d.socket);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', () => resolve());
      sock.once('error', reject);
    });
    sock.on('error', () => {});
    // Hello, then Stats requests whose answers this client never reads: the
    // daemon's writes back up, so its end() waits for FLUSH_MS before the socket goes.
    sock.pause();
    const hello = encodeFrame({ id: 1, hello: { protocolVersion: PROTOCOL_VERSION, clientKind: 'slow-reader', fingerprint: { model: 'shutdown' } } });
    const stats = Array.from({ length: 2000 }, (_, i) => encodeFrame({ id: 2 + i, stats: {} }));
    sock.write(Buffer.concat([hello, ...stats]));
    await waitFor(() => d.daemon.server.connectionCount === 1, 'the connection to be accepted');
    await new Promise((r) => setTimeout(r, 200));
    try {
      await d.stop(); // daemon.close(), and throws on any internal error logged
      expect(d.daemon.server.connectionCount).toBe(0);
    } finally {
      sock.destroy();
    }
  }, 30_000);
});
