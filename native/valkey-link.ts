/**
 * Opens the addon's native Valkey data plane to one node
 * (native/src/valkey/link.h); src/tiers/valkey-native.ts drives it.
 */
import { load, type ValkeyLinkBinding } from './loader.js';

export interface ValkeyLinkOptions {
  host: string;
  port: number;
  username?: string;
  password?: string;
  db?: number;
  connections: number;
  connectTimeoutMs: number;
  /**
   * A chunk's segments are cut into parts of about this many bytes, each
   * pipelined on one connection; each part gets a job's timeout from the
   * moment it starts, not from when it was queued.
   */
  pipelineBytes: number;
  /**
   * TLS on node's own OpenSSL (native/src/valkey/tls.h): the server's
   * certificate is checked against `caPem` (PEM text; absent: the system's
   * roots) and the host name, unless `insecure`.
   */
  tls?: { caPem?: string; insecure: boolean };
}

/** A native Valkey data plane to one node; throws KVT_NATIVE when the addon is not built. */
export function openValkeyLink(o: ValkeyLinkOptions): ValkeyLinkBinding {
  const { ValkeyLink } = load();
  return new ValkeyLink(o.host, o.port, o.username ?? '', o.password ?? '', o.db ?? 0, o.connections, o.connectTimeoutMs, o.pipelineBytes,
    o.tls !== undefined, o.tls?.caPem ?? '', o.tls?.insecure ?? false);
}

