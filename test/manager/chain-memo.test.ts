/**
 * The chain memo (chain_memo_mb) in a real daemon: a warm Lookup's chunks
 * come from the memo, and the memo never makes a changed prompt hit more
 * than it should. The memo is the addon's, one per process: these daemons
 * run in the test process, so each test sets it through its own daemon.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { packTokens } from '../../src/chunking/tokens.js';
import { formatStats } from '../../src/cli/stats.js';
import type { DaemonStats } from '../../src/daemon.js';
import { nativeAvailable } from '../../native/index.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { freePort } from '../../bench/valkey-server.js';
import { parseMetrics } from '../metrics/parse.js';

const CHUNKS = 8;
const prompt = (change?: number): number[] => {
  const t = Array.from({ length: CHUNKS * 256 }, (_, i) => (i * 7919) % 128_000);
  if (change !== undefined) t[change] = (t[change] + 1) % 128_000;
  return t;
};

describe.skipIf(!nativeAvailable())('chain memo in the daemon', () => {
  let d: TestDaemon | null = null;
  afterEach(async () => {
    await d?.stop();
    d = null;
  });
  const memo = async (): Promise<NonNullable<DaemonStats['chainMemo']>> => ((await (await d!.connect()).stats()) as unknown as DaemonStats).chainMemo!;

  it('a warm Lookup hashes nothing, and a one-token change still misses from its chunk on', async () => {
    const port = await freePort();
    d = await startTestDaemon({ chain_memo_mb: 32, metrics_port: port });
    const scrape = async (): Promise<{ hits: number; hashed: number }> => {
      const m = parseMetrics(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
      return { hits: m.value('kvtier_chain_memo_hits_total'), hashed: m.value('kvtier_chain_hashed_chunks_total') };
    };
    const c = await d.connect({ fingerprint: { model: 'chain-memo' } });
    await (await c.store({ address: { tokens: packTokens(prompt()) }, chunks: Array.from({ length: CHUNKS }, (_, i) => Buffer.alloc(4096, i)) })).committed;
    const before = await memo();
    const scrapedBefore = await scrape();
    expect((await c.lookup({ tokens: packTokens(prompt()) }, { noLease: true })).hitChunks).toBe(CHUNKS);
    const after = await memo();
    expect(after.hits - before.hits).toBe(CHUNKS);
    expect(after.misses - before.misses).toBe(0);
    const scrapedAfter = await scrape();
    expect(scrapedAfter.hits - scrapedBefore.hits).toBe(CHUNKS);
    expect(scrapedAfter.hashed).toBe(scrapedBefore.hashed);
    // Token 5 * 256 + 3 changed: chunks 0-4 are the stored ones, chunk 5 on are another prompt's.
    expect((await c.lookup({ tokens: packTokens(prompt(5 * 256 + 3)) }, { noLease: true })).hitChunks).toBe(5);
    expect((await c.lookup({ tokens: packTokens(prompt(5 * 256 + 3)) }, { noLease: true })).hitChunks).toBe(5);
    expect((await c.lookup({ tokens: packTokens(prompt()) }, { noLease: true })).hitChunks).toBe(CHUNKS);
    expect(formatStats((await c.stats()) as unknown as DaemonStats)).toMatch(/hash memo\s+\d+\.\d% of chunk steps from the memo \(\d+ of \d+\), \d+ slots/);
  });

  it('chain_memo_mb: 0 hashes every chunk and answers the same', async () => {
    d = await startTestDaemon({ chain_memo_mb: 0 });
    const c = await d.connect({ fingerprint: { model: 'chain-memo' } });
    await (await c.store({ address: { tokens: packTokens(prompt()) }, chunks: Array.from({ length: CHUNKS }, (_, i) => Buffer.alloc(4096, i)) })).committed;
    const before = await memo();
    expect((await c.lookup({ tokens: packTokens(prompt()) }, { noLease: true })).hitChunks).toBe(CHUNKS);
    expect((await c.lookup({ tokens: packTokens(prompt(5 * 256 + 3)) }, { noLease: true })).hitChunks).toBe(5);
    const after = await memo();
    expect(after.hits).toBe(before.hits);
    expect(after.bytes).toBe(0);
    expect(after.misses - before.misses).toBe(CHUNKS + CHUNKS);
    expect(formatStats((await c.stats()) as unknown as DaemonStats)).toMatch(/hash memo\s+off \(chain_memo_mb: 0\)/);
  });
});
