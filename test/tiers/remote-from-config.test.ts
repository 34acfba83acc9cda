/**
 * blocking_timeout_secs as src/tiers/remote-from-config.ts reads it: an upper
 * cap on how long a blocking call waits on Valkey (LMCache's meaning), not
 * a per-request base. Regression: the key was multiplied by 100, so the
 * documented 10 s was a 1 s request base, 2 s was 250 ms and 100 s was 10 s.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/log.js';
import { MIN_REQUEST_TIMEOUT_MS, tierOptionsFromConfig } from '../../src/tiers/remote-from-config.js';
import { hungServerBoundMs } from '../../src/tiers/valkey-options.js';

const options = (overrides: Record<string, unknown>) => {
  const { config } = loadConfig({ env: {}, overrides: { remote_url: 'valkey://127.0.0.1:1', ...overrides } });
  return tierOptionsFromConfig({ ...config, remoteUrl: config.remoteUrl! }, silentLogger);
};

describe('blocking_timeout_secs', () => {
  it('keeps the default 1 s request base and the 2280 ms hung-server bound at its default of 10 s', () => {
    const o = options({});
    expect(o.requestTimeoutMs).toBe(1000);
    expect(hungServerBoundMs(o)).toBe(2280);
  });

  it('is a cap: every bound fits inside it, and a large cap does not stretch requests', () => {
    for (const secs of [1, 1.5, 2, 3, 10, 100, 3600]) {
      for (const seg of [65536, 1 << 20, 4 << 20]) {
        const o = options({ blocking_timeout_secs: secs, valkey_segment_bytes: seg });
        expect(o.requestTimeoutMs).toBeLessThanOrEqual(1000);
        // Unless the floor held (1 s is too short for two 4 MiB transfers at 16 MB/s), the bound fits.
        if (o.requestTimeoutMs! > MIN_REQUEST_TIMEOUT_MS) expect(hungServerBoundMs(o)).toBeLessThanOrEqual(secs * 1000);
        else expect(seg).toBe(4 << 20);
      }
    }
    // The old code gave 100 s a 10 s request base (a 20 s hung-server bound).
    expect(options({ blocking_timeout_secs: 100 }).requestTimeoutMs).toBe(1000);
    // ...and 2 s a 250 ms base, where 860 ms still fits the 2 s cap.
    expect(options({ blocking_timeout_secs: 2 }).requestTimeoutMs).toBe(860);
    expect(hungServerBoundMs(options({ blocking_timeout_secs: 2 }))).toBe(2000);
  });

  it('never gives a request less than the floor, however small the cap', () => {
    expect(options({ blocking_timeout_secs: 0.01 }).requestTimeoutMs).toBe(MIN_REQUEST_TIMEOUT_MS);
  });
});
