/**
 * Options and counters of the Valkey tier, apart from the tier itself so
 * that config and metrics code can import the shapes without glide.
 * Defaults are applied in ValkeyTier's constructor and listed here.
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
  /** Base timeout of a request; scaled up by its bytes. Default 1000. */
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
