/**
 * Daemons in front of a Valkey stopped with SIGSTOP (alive, silent). A
 * Lookup that needs Valkey answers within hungServerBoundMs() of the
 * daemon's own settings, a Store's write-behind gives up within it, and
 * after SIGCONT both daemons serve the chunks again, byte-exact.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { packTokens } from '../../src/chunking/tokens.js';
import { silentLogger } from '../../src/log.js';
import { tierOptionsFromConfig } from '../../src/tiers/remote-from-config.js';
import { hungServerBoundMs } from '../../src/tiers/valkey-options.js';
import { startTestDaemon, waitFor } from '../helpers/daemon.js';
import { startValkey, stopAllValkey } from '../../bench/valkey-server.js';

const MiB = 1 << 20;
const SLACK_MS = 750;
const fp = { model: 'hung-model', dtype: 'bfloat16', kvLayout: 'test' };
const tokens = (n: number, seed: number): Buffer => packTokens(Array.from({ length: n }, (_, i) => (i * 104729 + seed) % 128_000));

let stoppedPid: number | null = null;
afterAll(async () => {
  if (stoppedPid !== null) process.kill(stoppedPid, 'SIGCONT');
  await stopAllValkey();
});

describe('a daemon and a hung Valkey', () => {
  it('Lookup and write-behind end within the bound while Valkey is stopped; all resumes after SIGCONT', async () => {
    const valkey = await startValkey();
    const pid = Number(/process_id:(\d+)/.exec(await valkey.cli(['INFO', 'server']))![1]);
    const a = await startTestDaemon({ remote_url: valkey.url, valkey_connections: 2 });
    const b = await startTestDaemon({ remote_url: valkey.url, valkey_connections: 2 });
    try {
      const bound = hungServerBoundMs(tierOptionsFromConfig({ ...b.config, remoteUrl: valkey.url }, silentLogger));
      expect(bound).toBe(2280); // the defaults: blocking_timeout_secs 10, 1 MiB segments
      const ca = await a.connect({ fingerprint: fp });
      const cb = await b.connect({ fingerprint: fp });
      const t = tokens(3 * 256, 1);
      const chunks = [randomBytes(2 * MiB + 1), randomBytes(5000), randomBytes(MiB)];
      expect(await (await ca.store({ address: { tokens: t }, chunks })).committed).toMatchObject({ committedChunks: 3 });

      process.kill(pid, 'SIGSTOP');
      stoppedPid = pid;
      const t0 = performance.now();
      const fresh = tokens(256, 2);
      const [lookup, store] = await Promise.all([
        (async () => {
          const l = await cb.lookup({ tokens: t }, { noLease: true });
          return { l, ms: performance.now() - t0 };
        })(),
        (async () => {
          const s = await ca.store({ address: { tokens: fresh }, chunks: [randomBytes(MiB + 3)] });
          const c = await s.committed;
          return { s, c, ms: performance.now() - t0 };
        })(),
      ]);
      // B has none of them in its host tier and cannot ask Valkey: a miss, in time.
      expect(lookup.l.hitChunks).toBe(0);
      expect(lookup.ms).toBeLessThanOrEqual(bound + SLACK_MS);
      // A copied the chunk to its host tier; writing it to Valkey failed, in time.
      expect(store.s.copied.storedChunks).toBe(1);
      expect(store.c.failedChunks).toBe(1);
      expect(store.ms).toBeLessThanOrEqual(bound + SLACK_MS);
      await waitFor(() => !b.daemon.stats().remote.available, 'B sees Valkey down', Math.max(1, bound + SLACK_MS - (performance.now() - t0)));
      // Down: answered at once from the host tier.
      const t1 = performance.now();
      expect((await cb.lookup({ tokens: t }, { noLease: true })).hitChunks).toBe(0);
      expect(performance.now() - t1).toBeLessThan(200);
      expect((await ca.lookup({ tokens: fresh }, { noLease: true })).hostChunks).toBe(1);

      await new Promise((r) => setTimeout(r, Math.max(0, 3000 - (performance.now() - t0))));
      process.kill(pid, 'SIGCONT');
      stoppedPid = null;
      await waitFor(() => a.daemon.stats().remote.available && b.daemon.stats().remote.available, 'Valkey back', 10_000);
      const l = await cb.lookup({ tokens: t });
      expect(l.valkeyChunks).toBe(3);
      const r = await cb.retrieve({ leaseId: l.leaseId });
      expect(r.loadedChunks).toBe(3);
      r.chunks.forEach((c, i) => expect(Buffer.from(c).equals(chunks[i])).toBe(true));
    } finally {
      if (stoppedPid !== null) {
        process.kill(stoppedPid, 'SIGCONT');
        stoppedPid = null;
      }
      await a.stop();
      await b.stop();
      await valkey.stop();
    }
  }, 60_000);
});
