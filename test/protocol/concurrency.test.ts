/** 32 concurrent clients pipelining put/get of random sizes: every byte read back equals what was written. */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

describe('pipelined concurrent clients', () => {
  let d: TestDaemon;
  beforeAll(async () => {
    d = await startTestDaemon({ max_local_cpu_size: 1 });
  });
  afterAll(async () => {
    await d.stop();
  });

  it('32 clients x 40 pipelined put/get of random sizes read back exactly', { timeout: 120_000 }, async () => {
    const sizes = fc.sample(fc.oneof(fc.integer({ min: 0, max: 512 }), fc.integer({ min: 513, max: 64 * 1024 }), fc.integer({ min: 256 * 1024, max: (1 << 20) + 7 })), { numRuns: 32 * 40, seed: 42 });
    const clients = await Promise.all(Array.from({ length: 32 }, (_, i) => d.connect({ fingerprint: { model: 'concurrency' }, clientKind: `c${i}`, timeoutMs: 60_000 })));
    let written = 0;
    await Promise.all(clients.map(async (c, ci) => {
      const items = Array.from({ length: 40 }, (_, j) => ({ key: Buffer.from(`c${ci}-k${j}`), value: randomBytes(sizes[ci * 40 + j]) }));
      await Promise.all(items.map((it) => c.put(it.key, it.value)));
      const got = await Promise.all(items.map((it) => c.get(it.key)));
      got.forEach((g, j) => {
        expect(g).not.toBeNull();
        expect(g!.equals(items[j].value)).toBe(true);
        written += g!.length;
      });
      // Another client reads this client's values: same namespace, same bytes.
      const other = clients[(ci + 1) % clients.length];
      const cross = await other.get(items[0].key);
      expect(cross!.equals(items[0].value)).toBe(true);
    }));
    expect(written).toBeGreaterThan(0);
    expect(d.daemon.stats().host.skippedFull).toBe(0);
  });

  it('a client pipelining far past the per-connection bounds gets every answer; others are served meanwhile', { timeout: 120_000 }, async () => {
    const greedy = await d.connect({ fingerprint: { model: 'greedy' }, timeoutMs: 60_000 });
    const other = await d.connect({ fingerprint: { model: 'greedy' } });
    const value = randomBytes(1 << 20);
    await greedy.put(Buffer.from('big'), value);
    const pings = Array.from({ length: 5000 }, () => greedy.ping());
    const gets = Array.from({ length: 200 }, () => greedy.get(Buffer.from('big')));
    // 200 MiB of answers queued for one client; another client still gets through.
    await other.ping();
    expect((await other.get(Buffer.from('big')))!.equals(value)).toBe(true);
    await Promise.all(pings);
    for (const g of await Promise.all(gets)) expect(g!.equals(value)).toBe(true);
  });
});
