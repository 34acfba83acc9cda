/**
 * The glide pool across a Valkey restart, against a real valkey-server.
 *
 * Regression (test/manager/fleet.test.ts "Valkey killed mid-run", once in
 * about six runs): the pool went down while an invalidate's DEL waited in a
 * glide client for that client's own reconnect; closing the client rejected
 * the DEL at once, the daemon stored the chunks again, and the DEL still
 * reached the restarted server when the old client reconnected, deleting
 * the new manifests and inline values. A request's outcome must be final
 * when the pool reports it.
 */
import { afterAll, expect, it } from 'vitest';
import { ValkeyPool, type PoolState } from '../../src/tiers/valkey-pool.js';
import { parseValkeyUrl } from '../../src/tiers/valkey-url.js';
import { startValkey, stopAllValkey } from '../../bench/valkey-server.js';

afterAll(async () => {
  await stopAllValkey();
});

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

it('a request the pool settled during an outage does nothing on the server afterwards', async () => {
  const server = await startValkey();
  const states: PoolState[] = [];
  const pool = new ValkeyPool({
    endpoint: parseValkeyUrl(server.url),
    connections: 1,
    // Long enough that the request below is still waiting in glide when
    // its client reconnects to the restarted server.
    requestTimeoutMs: 4000,
    minBytesPerSec: 16e6,
    connectTimeoutMs: 300,
    reconnectMinMs: 50,
    reconnectMaxMs: 300,
    bulkPerConnection: 1,
    maxValueBytes: 1 << 20,
    tlsInsecure: false,
    log: () => undefined,
    onState: (s) => states.push(s),
  });
  try {
    await pool.firstAttempt();
    expect(pool.state).toBe('up');
    await server.kill();
    // Queued in the glide client, which is reconnecting on its own.
    const outcome = pool.run([{ op: 'set', key: 'k', value: Buffer.from('sent during the outage') }]).then(
      () => 'stored',
      () => 'failed',
    );
    // What run() does when another request sees the connection broken.
    pool.markDown(new Error('connection reset by peer'));
    expect(pool.state).toBe('down');
    await server.restart();
    const told = await outcome;
    await until('pool up again', () => pool.state === 'up');
    // glide retries a lost connection every 400 ms at most (valkey-pool.ts):
    // a command its old client still held would have reached the server by now.
    await new Promise((r) => setTimeout(r, 1500));
    const value = await server.cli(['GET', 'k']);
    expect({ told, onServer: value.trim() !== '' }).toEqual({ told, onServer: told === 'stored' });
    expect(states).toEqual(['up', 'down', 'up']);
  } finally {
    await pool.close();
  }
}, 30_000);
