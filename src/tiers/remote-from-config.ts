/**
 * Builds the Valkey tier from the daemon's config. A Valkey that is down at
 * start is not fatal (the tier reconnects by itself); wrong credentials are
 * logged as an error naming the redacted URL and the daemon runs with the
 * host tier only, because a worker fleet is better served by a working host
 * cache than by a daemon that refuses to start at 3 a.m. A TLS CA file that
 * cannot be read is different: a ConfigError (exit 2), since that tier could
 * never connect.
 */
import type { KvtierConfig } from '../config/load.js';
import { isTlsUrl, readCaFile } from '../config/tls-files.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { VALKEY_DEFAULTS, requestCeilingMs, requestTimeInputs, type ValkeyTierOptions } from './valkey-options.js';
import { redactUrl } from './valkey-url.js';
import { ValkeyTier } from './valkey-tier.js';

/**
 * The tier options a config asks for (remote_url set), the CA file read;
 * hungServerBoundMs() of these is the daemon's bound on a hung Valkey.
 */
export function tierOptionsFromConfig(config: KvtierConfig & { remoteUrl: string }, log: Logger): ValkeyTierOptions {
  const url = withCredentials(config.remoteUrl, config.valkeyUsername, config.valkeyPassword);
  const redacted = redactUrl(url);
  const tls = isTlsUrl(config.remoteUrl);
  return {
    url,
    mode: config.valkeyMode,
    keyPrefix: config.keyPrefix,
    ttlSecs: config.ttlSecs,
    serde: config.remoteSerde,
    segmentBytes: config.valkeySegmentBytes,
    connections: config.valkeyConnections,
    dataPath: config.valkeyDataPath,
    requestTimeoutMs: requestTimeoutFor(config.blockingTimeoutSecs, config.valkeySegmentBytes),
    ...(tls && config.valkeyTlsCaFile !== null ? { tlsRootCertificates: readCaFile(config.valkeyTlsCaFile, 'config') } : {}),
    tlsInsecure: tls && config.valkeyTlsInsecure,
    log: (level, message) => log[level](message, { remote: redacted }),
    onAvailability: (available, error) => {
      if (available) log.info('valkey tier available', { remote: redacted });
      else log.warn('valkey tier unavailable: stores skipped, lookups answered from the host tier', { remote: redacted, error: error?.message ?? null });
    },
  };
}

/** The smallest base timeout a request gets, however low blocking_timeout_secs is. */
export const MIN_REQUEST_TIMEOUT_MS = 100;

/**
 * blocking_timeout_secs is LMCache's "how long a blocking call may wait": an
 * upper cap, not the per-request base. A call waits at most
 * hungServerBoundMs = 2 x requestCeilingMs (a request, then the PING that
 * confirms a hung server), so the base is the default 1000 ms, lowered
 * until that bound fits in the cap (never below MIN_REQUEST_TIMEOUT_MS).
 * A cap above the default bound (2280 ms at defaults) changes nothing.
 */
export function requestTimeoutFor(blockingTimeoutSecs: number, segmentBytes: number): number {
  const capMs = blockingTimeoutSecs * 1000;
  const transferMs = requestCeilingMs(requestTimeInputs({ requestTimeoutMs: 0, segmentBytes }));
  const fits = Math.floor(capMs / 2 - transferMs);
  return Math.max(MIN_REQUEST_TIMEOUT_MS, Math.min(VALKEY_DEFAULTS.requestTimeoutMs, fits));
}

export async function createRemoteTier(config: KvtierConfig, log: Logger): Promise<ValkeyTier | null> {
  if (config.remoteUrl === null) return null;
  const options = tierOptionsFromConfig({ ...config, remoteUrl: config.remoteUrl }, log);
  const redacted = redactUrl(options.url);
  try {
    const tier = await ValkeyTier.create(options);
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
