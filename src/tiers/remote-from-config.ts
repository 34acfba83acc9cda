/**
 * Builds the Valkey tier from the daemon's config. A Valkey that is down at
 * start is not fatal (the tier reconnects by itself); wrong credentials are
 * logged as an error naming the redacted URL and the daemon runs with the
 * host tier only, because a worker fleet is better served by a working host
 * cache than by a daemon that refuses to start at 3 a.m.
 */
import type { KvtierConfig } from '../config/load.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { redactUrl } from './valkey-url.js';
import { ValkeyTier } from './valkey-tier.js';

export async function createRemoteTier(config: KvtierConfig, log: Logger): Promise<ValkeyTier | null> {
  if (config.remoteUrl === null) return null;
  const url = withCredentials(config.remoteUrl, config.valkeyUsername, config.valkeyPassword);
  const redacted = redactUrl(url);
  try {
    const tier = await ValkeyTier.create({
      url,
      mode: config.valkeyMode,
      keyPrefix: config.keyPrefix,
      ttlSecs: config.ttlSecs,
      serde: config.remoteSerde,
      segmentBytes: config.valkeySegmentBytes,
      connections: config.valkeyConnections,
      requestTimeoutMs: Math.max(250, config.blockingTimeoutSecs * 100),
      log: (level, message) => log[level](message, { remote: redacted }),
      onAvailability: (available, error) => {
        if (available) log.info('valkey tier available', { remote: redacted });
        else log.warn('valkey tier unavailable: stores skipped, lookups answered from the host tier', { remote: redacted, error: error?.message ?? null });
      },
    });
    log.info(tier.available ? 'valkey tier connected' : 'valkey not reachable yet; retrying in the background', { remote: redacted });
    return tier;
  } catch (e) {
    log.error('valkey tier disabled: serving the host tier only', { remote: redacted, error: errorMessage(e) });
    return null;
  }
}

/** Puts config-level username/password into the URL unless the URL has its own. */
function withCredentials(url: string, username: string | null, password: string | null): string {
  if (password === null || /^[a-z-]+:\/\/[^/]*@/i.test(url)) return url;
  const i = url.indexOf('://') + 3;
  const user = encodeURIComponent(username ?? '');
  return `${url.slice(0, i)}${user}:${encodeURIComponent(password)}@${url.slice(i)}`;
}
