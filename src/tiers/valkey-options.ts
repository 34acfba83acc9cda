/**
 * Options and counters of the Valkey tier, apart from the tier itself so
 * that config and metrics code can import the shapes without glide.
 * Defaults live in VALKEY_DEFAULTS (ValkeyTier applies them), and so do the
 * time bounds every Valkey call runs under: requestCeilingMs() for one
 * request, hungServerBoundMs() for a server that stops answering
 * (docs/valkey.md, "A hung server"). A native data path reuses both.
 */

import type { KvtierError } from '../errors.js';
import type { SerdeName } from './serde.js';
import type { DataPathChoice } from './valkey-native.js';
import type { LogFn } from './valkey-pool.js';
import type { ValkeyMode } from './valkey-url.js';

export interface ValkeyTierOptions {
  /** remote_url: valkey://, valkeys://, redis://, rediss://, valkey-cluster:// */
  url: string;
  /** 'cluster' turns a plain URL into cluster seeds (extra_config valkey_mode). */
  mode?: ValkeyMode;
  /** Default 'kvtier'. */
  keyPrefix?: string;
  /** Expiry of every key; 0 or absent: none. */
  ttlSecs?: number;
  /** Default 'naive'. */
  serde?: SerdeName;
  /** Payloads above this are stored as segments; default 1 MiB. */
  segmentBytes?: number;
  /** glide clients used round-robin; default 4. */
  connections?: number;
  /** Base timeout of a request; scaled up by its bytes up to requestCeilingMs(). Default 1000. */
  requestTimeoutMs?: number;
  /**
   * Slowest transfer a request is given time for, counting the bytes queued
   * ahead of it on its connection; default 16 MB/s (a loaded 2-core host).
   */
  minBytesPerSec?: number;
  /**
   * Requests of 64 KiB or more in flight per connection; more wait for a
   * free connection instead of pipelining. Default 1.
   */
  bulkPerConnection?: number;
  /** TCP/TLS connect timeout; default 1000. */
  connectTimeoutMs?: number;
  /** Reconnect backoff bounds; default 100 and 5000 ms. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Skip TLS certificate checks (tests, self-signed). */
  tlsInsecure?: boolean;
  /** PEM root certificates to trust for valkeys:// (else the system's). */
  tlsRootCertificates?: string | Buffer;
  /**
   * Which code moves segment bytes: 'native' (the addon's I/O threads),
   * 'glide', or 'auto' (native where it can serve the endpoint). Default auto.
   */
  dataPath?: DataPathChoice;
  /** Default: warn/error lines on stderr. */
  log?: LogFn;
  /** Called on every change of `available`, with the reason when it went down. */
  onAvailability?: (available: boolean, error?: KvtierError) => void;
}

export interface ValkeyTierCounters {
  /** Chunks written. */
  stores: number;
  /** Puts not done: Valkey down, out of memory, a failed request. */
  skipped: number;
  hits: number;
  misses: number;
  /** Values that failed verification (magic, header, namespace, length, checksum, serde). */
  corrupt: number;
  /** Manifests whose segments were gone (evicted, expired): a miss. */
  incomplete: number;
  /** Requests that failed (timeouts, connection loss, server errors). */
  errors: number;
  /** Times the connection came back after being lost or absent. */
  reconnects: number;
  /** Payload bytes read from / written to Valkey. */
  bytesIn: number;
  bytesOut: number;
}

export const VALKEY_DEFAULTS = {
  keyPrefix: 'kvtier',
  serde: 'naive',
  segmentBytes: 1 << 20,
  connections: 4,
  requestTimeoutMs: 1000,
  minBytesPerSec: 16e6,
  bulkPerConnection: 1,
  connectTimeoutMs: 1000,
  reconnectMinMs: 100,
  reconnectMaxMs: 5000,
} as const;

/** Room for a value's header beside its payload: a command's largest value is segment + this. */
export const VALUE_HEADER_BYTES = 64 * 1024;

/** No single Valkey request waits longer than this, whatever the settings. */
export const MAX_REQUEST_MS = 60_000;

/** What a request's time limit depends on (ValkeyPoolOptions has these fields). */
export interface RequestTimeInputs {
  requestTimeoutMs: number;
  minBytesPerSec: number;
  bulkPerConnection: number;
  /** The largest value one command carries: a segment (or unsegmented chunk) plus its header. */
  maxValueBytes: number;
}

/**
 * The longest one Valkey request (a plain GET/SET, a batch, a PING) waits:
 * the base timeout plus the time, at minBytesPerSec, for the most bytes a
 * connection can have ahead of and in the request (bulkPerConnection values
 * in flight and its own), at most MAX_REQUEST_MS.
 *
 *   requestTimeoutMs + (bulkPerConnection + 1) x maxValueBytes / minBytesPerSec
 */
export function requestCeilingMs(o: RequestTimeInputs): number {
  const ms = o.requestTimeoutMs + ((o.bulkPerConnection + 1) * o.maxValueBytes * 1000) / o.minBytesPerSec;
  return Math.ceil(Math.min(ms, MAX_REQUEST_MS));
}

/** The request-time inputs of a tier's options, defaults applied. */
export function requestTimeInputs(o: Pick<ValkeyTierOptions, 'requestTimeoutMs' | 'minBytesPerSec' | 'bulkPerConnection' | 'segmentBytes'>): RequestTimeInputs {
  return {
    requestTimeoutMs: o.requestTimeoutMs ?? VALKEY_DEFAULTS.requestTimeoutMs,
    minBytesPerSec: o.minBytesPerSec ?? VALKEY_DEFAULTS.minBytesPerSec,
    bulkPerConnection: Math.max(1, o.bulkPerConnection ?? VALKEY_DEFAULTS.bulkPerConnection),
    maxValueBytes: (o.segmentBytes ?? VALKEY_DEFAULTS.segmentBytes) + VALUE_HEADER_BYTES,
  };
}

/**
 * The longest any tier call (get, getInto, contains, put, delete) waits on
 * a Valkey that stopped answering (SIGSTOP, a hung node, a black-holed
 * link), and so the longest a Lookup, prefetch or write-behind store waits
 * on it: one request timing out, then the PING that confirms the server is
 * gone (each at most requestCeilingMs). The PING failing marks the tier
 * down, which closes the connections (their requests fail at once) and
 * rejects requests still waiting for a connection; until it is back up,
 * calls miss at once.
 *
 *   hungServerBoundMs = 2 x requestCeilingMs
 *
 * Default settings: 2 x ceil(1000 + 2 x 1,114,112 B / 16 MB/s) = 2 x 1140 = 2280 ms.
 */
export function hungServerBoundMs(o: Pick<ValkeyTierOptions, 'requestTimeoutMs' | 'minBytesPerSec' | 'bulkPerConnection' | 'segmentBytes'> = {}): number {
  return 2 * requestCeilingMs(requestTimeInputs(o));
}
