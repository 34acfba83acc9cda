/**
 * The Valkey tier's bulk bytes in native code: segment writes and reads go
 * between host slabs and Valkey sockets on the addon's I/O threads
 * (native/src/valkey/), one completion per chunk, no JS Buffer per segment.
 *
 *   write  JS packs the manifest with placeholder checksums; the I/O threads
 *          compute each segment's xxh64, patch it in, SET the segments
 *          (writev from the slab, in parts spread over the connections) and
 *          then the manifest, once every part succeeded.
 *   read   GETs (manifest +) segments pipelined; each segment's bytes land in
 *          place in the slab and are hashed there; JS compares the sums with
 *          the manifest before anything is handed on.
 *
 * Single node: one link. Cluster: one link per master, opened when a chunk
 * first goes to it and closed when the node leaves the slot map; a chunk is
 * one slot (valkey-slots.ts), so one job on one link. The map comes from
 * glide (CLUSTER SLOTS), refreshed after a MOVED/ASK or a lost node, at most
 * one fetch in flight; without a map, or for a slot without a node, the
 * chunk goes through glide. TLS runs on node's own OpenSSL (the addon links
 * none of its own); inline (unsegmented) values stay on glide. Why a tier is
 * on glide is in `info.reason`, which stats and doctor show.
 */

import type { ValkeyLinkBinding, ValkeyReadResult } from '../../native/index.js';
import { ErrorCode, errorMessage } from '../errors.js';
import { keyHashSlot, parseClusterSlots, splitAddress, type SlotMap } from './valkey-slots.js';
import type { ValkeyEndpoint } from './valkey-url.js';

export type DataPathName = 'native' | 'glide';
export type DataPathChoice = DataPathName | 'auto';

export interface DataPathInfo {
  path: DataPathName;
  reason: string;
}

/** Placeholder bytes of one checksum in a packed manifest (msgpack fixstr of 16). */
const SUM_PLACEHOLDER = 'x'.repeat(16);
const FIXSTR16 = 0xb0 | 16;
/**
 * Bytes of one chunk pipelined on one connection before the next part goes
 * to another. Measured on the build VM (2 cores, 4 connections, 1 MiB
 * segments, noisy): a 32 MiB chunk as one 32-segment pipeline ran at ~0.5 of
 * the server's best; parts of 1, 2 and 4 MiB spread over the connections at
 * store 1.67 / 1.08 / 1.41 and retrieve 1.09 / 0.85 / 0.90 GB/s. The server
 * takes MiB values best one per connection at a time.
 */
const PIPELINE_BYTES = 1 << 20;
/** A server's redirect as a native job reports it: "<cmd> <key> refused: MOVED <slot> <host:port>". */
const REDIRECT = /refused: (MOVED|ASK) /;

/** A failed native job: `code` says whether the connection (not just this chunk) is in doubt. */
export interface NativeFailure {
  code: string;
  message: string;
  /** The node does not (or no longer) serve the chunk's slot: MOVED or ASK. */
  redirect: boolean;
}

function tlsOf(tls: NativeOpenOptions['tls']): { caPem?: string; insecure: boolean } {
  const roots = tls?.rootCertificates;
  return {
    insecure: tls?.insecure ?? false,
    ...(roots !== undefined ? { caPem: typeof roots === 'string' ? roots : roots.toString('utf8') } : {}),
  };
}

export function failureOf(e: unknown): NativeFailure {
  const code = (e as { code?: unknown } | null)?.code;
  const c = typeof code === 'string' ? code : ErrorCode.KVT_NATIVE;
  const message = errorMessage(e);
  return { code: c, message, redirect: c === ErrorCode.KVT_VALKEY_REFUSED && REDIRECT.test(message) };
}

export interface NativeStats {
  jobs: number;
  failures: number;
  reconnects: number;
  bytesOut: number;
  bytesIn: number;
  /** Links open now (one per node in use). */
  nodes: number;
  /** Jobs a cluster node answered with MOVED/ASK (then done through glide). */
  redirects: number;
  /** Slot maps fetched and installed. */
  mapRefreshes: number;
}

export interface NativeOpenOptions {
  /** For a valkeys:// endpoint: the same trust settings glide gets. */
  tls?: { rootCertificates?: string | Buffer; insecure: boolean };
  /** Cluster endpoints: the raw CLUSTER SLOTS reply (ValkeyPool.clusterSlots). */
  clusterSlots?: () => Promise<unknown>;
  log?: (level: 'info' | 'warn' | 'error', message: string) => void;
}

type LinkCounters = Omit<NativeStats, 'nodes' | 'redirects' | 'mapRefreshes'>;

export class NativeDataPath {
  readonly #openLink: (host: string, port: number) => ValkeyLinkBinding;
  readonly #connections: number;
  readonly #tls: boolean;
  /** Single node: the one link; null for a cluster. */
  readonly #single: { link: ValkeyLinkBinding; addr: string } | null;
  readonly #fetchSlots: (() => Promise<unknown>) | null;
  readonly #log: NonNullable<NativeOpenOptions['log']>;
  #links = new Map<string, ValkeyLinkBinding>();
  #map: SlotMap | null = null;
  #refreshing: Promise<void> | null = null;
  #again = false;
  /** The last fetch failed: further failures are not logged until one succeeds. */
  #fetchFailing = false;
  #closed = false;
  /** Counters of links already closed, so stats never go backwards. */
  #retired: LinkCounters = { jobs: 0, failures: 0, reconnects: 0, bytesOut: 0, bytesIn: 0 };
  #redirects = 0;
  #mapRefreshes = 0;

  private constructor(openLink: (host: string, port: number) => ValkeyLinkBinding, connections: number, single: string | null, tls: boolean, options: NativeOpenOptions) {
    this.#openLink = openLink;
    this.#connections = connections;
    this.#tls = tls;
    this.#log = options.log ?? (() => undefined);
    if (single !== null) {
      const { host, port } = splitAddress(single);
      this.#single = { link: openLink(host, port), addr: single };
      this.#fetchSlots = null;
    } else {
      this.#single = null;
      this.#fetchSlots = options.clusterSlots ?? null;
    }
  }

  /**
   * The native path for `endpoint`, or why not. `choice` 'glide' forces the
   * fallback; 'native' makes an unusable native path an error for the caller
   * to report. A cluster path has no slot map until refresh() fetched one.
   */
  static async open(endpoint: ValkeyEndpoint, choice: DataPathChoice, connections: number, connectTimeoutMs: number, options: NativeOpenOptions = {}): Promise<{ path: NativeDataPath | null; info: DataPathInfo }> {
    const glide = (reason: string): { path: null; info: DataPathInfo } => ({ path: null, info: { path: 'glide', reason } });
    if (choice === 'glide') return glide('valkey_data_path: glide');
    // The addon's TLS calls resolve to node's OpenSSL: a node built without one has none to give.
    if (endpoint.tls && !process.versions.openssl) return glide('TLS endpoint, and this node has no OpenSSL for the addon to use');
    const cluster = endpoint.mode === 'cluster';
    if (cluster && !options.clusterSlots) return glide('cluster endpoint without a slot map source');
    try {
      const mod = await import('../../native/index.js');
      // Loads the addon now: a cluster opens its links only when chunks go to them.
      mod.nativeXxh64(Buffer.alloc(0));
      const openLink = (host: string, port: number): ValkeyLinkBinding => mod.openValkeyLink({
        host, port, username: endpoint.username, password: endpoint.password,
        // A cluster has only db 0 (no SELECT).
        db: cluster ? 0 : endpoint.databaseId,
        connections, connectTimeoutMs, pipelineBytes: PIPELINE_BYTES,
        ...(endpoint.tls ? { tls: tlsOf(options.tls) } : {}),
      });
      const a = endpoint.addresses[0];
      const path = new NativeDataPath(openLink, connections, cluster ? null : `${a.host}:${a.port}`, endpoint.tls, options);
      return { path, info: path.info };
    } catch (e) {
      return glide(`native addon unavailable: ${errorMessage(e)}`);
    }
  }

  get info(): DataPathInfo {
    const tls = this.#tls ? ' (TLS)' : '';
    if (this.#single) return { path: 'native', reason: `addon I/O threads, ${this.#connections} connections${tls} to ${this.#single.addr}` };
    const n = this.#map?.nodes.length;
    return {
      path: 'native',
      reason: n === undefined
        ? `addon I/O threads, ${this.#connections} connections${tls} to each cluster node (no slot map yet: chunks go through glide)`
        : `addon I/O threads, ${this.#connections} connections${tls} to each of ${n} cluster nodes`,
    };
  }

  /** The link of the node serving `key`'s slot; null: no map, or no node for it (use glide). */
  #linkFor(key: string): ValkeyLinkBinding | null {
    if (this.#single) return this.#single.link;
    const map = this.#map;
    if (map === null || this.#closed) return null;
    const i = map.owner[keyHashSlot(key)];
    if (i < 0) return null;
    const addr = map.nodes[i];
    let link = this.#links.get(addr);
    if (link === undefined) {
      const { host, port } = splitAddress(addr);
      link = this.#openLink(host, port);
      this.#links.set(addr, link);
    }
    return link;
  }

  /**
   * The segments of `stored`, then its manifest (`manifest`, packed with
   * placeholderSums(); `sumOffsets` from sumOffsets()). null: no node known
   * for the chunk's slot, nothing sent (the caller writes through glide).
   */
  write(segKeys: string[], stored: Buffer, segBytes: number, segTtl: number, manifestKey: string, manifest: Buffer, sumOffsets: Uint32Array, ttl: number, timeoutMs: number): Promise<void> | null {
    const link = this.#linkFor(manifestKey);
    return link && link.write(segKeys, stored, segBytes, segTtl, manifestKey, manifest, sumOffsets, ttl, timeoutMs);
  }

  /**
   * Segments into `dest` (and the manifest, up to manifestCap bytes, when
   * manifestKey is not ''). null: no node known for the chunk's slot.
   */
  read(manifestKey: string, manifestCap: number, segKeys: string[], dest: Buffer, segBytes: number, timeoutMs: number): Promise<ValkeyReadResult> | null {
    const link = this.#linkFor(manifestKey !== '' ? manifestKey : (segKeys[0] ?? ''));
    return link && link.read(manifestKey, manifestCap, segKeys, dest, segBytes, timeoutMs);
  }

  /**
   * What a failed job means: a redirect or a lost node makes a cluster's
   * slot map suspect, so it is fetched again (the chunk itself is the
   * caller's: glide after a redirect, a skip or miss otherwise).
   */
  failed(e: unknown): NativeFailure {
    const f = failureOf(e);
    if (f.redirect) this.#redirects++;
    if (this.#fetchSlots && (f.redirect || f.code === ErrorCode.KVT_VALKEY_UNAVAILABLE)) void this.refresh(true);
    return f;
  }

  /**
   * Fetches the slot map (cluster only), at most one fetch in flight: a
   * call while one runs joins it, and with `again` (the map was seen stale
   * meanwhile) one more fetch follows it. A failed fetch keeps the old map
   * and is logged once until a fetch succeeds again.
   */
  refresh(again = false): Promise<void> {
    const fetch = this.#fetchSlots;
    if (fetch === null || this.#closed) return Promise.resolve();
    if (this.#refreshing) {
      if (again) this.#again = true;
      return this.#refreshing;
    }
    this.#refreshing = (async () => {
      do {
        this.#again = false;
        try {
          const map = parseClusterSlots(await fetch());
          if (!this.#closed) this.#install(map);
          this.#fetchFailing = false;
        } catch (e) {
          if (!this.#fetchFailing && !this.#closed) this.#log('warn', `valkey native path: slot map not refreshed (the old one stays): ${errorMessage(e).trim()}`);
          this.#fetchFailing = true;
        }
      } while (this.#again && !this.#closed);
      this.#refreshing = null;
    })();
    return this.#refreshing;
  }

  /** A new map: links of nodes that left it are closed (their running jobs fail). */
  #install(map: SlotMap): void {
    const keep = new Set(map.nodes);
    for (const [addr, link] of this.#links) {
      if (keep.has(addr)) continue;
      this.#retire(link);
      this.#links.delete(addr);
    }
    this.#map = map;
    this.#mapRefreshes++;
  }

  #retire(link: ValkeyLinkBinding): void {
    const s = link.stats();
    for (const k of Object.keys(this.#retired) as (keyof LinkCounters)[]) this.#retired[k] += s[k];
    link.close();
  }

  #allLinks(): ValkeyLinkBinding[] {
    return this.#single ? [this.#single.link] : [...this.#links.values()];
  }

  /** The server is down or hung: fail every part on every link, running or queued, now (connections reopen on the next job). */
  abort(why: string): number {
    return this.#allLinks().reduce((n, l) => n + l.abort(why), 0);
  }

  /** Counters summed over every link, open or closed. */
  stats(): NativeStats {
    const sum: LinkCounters = { ...this.#retired };
    for (const link of this.#allLinks()) {
      const s = link.stats();
      for (const k of Object.keys(sum) as (keyof LinkCounters)[]) sum[k] += s[k];
    }
    return { ...sum, nodes: this.#allLinks().length, redirects: this.#redirects, mapRefreshes: this.#mapRefreshes };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const link of this.#allLinks()) link.close();
    this.#links.clear();
  }
}

/** `count` placeholder checksums for a manifest the native writer fills in. */
export function placeholderSums(count: number): string[] {
  return Array.from({ length: count }, () => SUM_PLACEHOLDER);
}

/**
 * Where each placeholder checksum sits in a packed manifest whose last field
 * is `segs`: the value ends with `count` fixstr-16 strings. null if the
 * packing is not what that assumes (then the caller writes through glide).
 */
export function sumOffsets(manifest: Buffer, count: number): Uint32Array | null {
  const out = new Uint32Array(count);
  const first = manifest.length - count * 17;
  if (first < 0) return null;
  for (let i = 0; i < count; i++) {
    const at = first + i * 17;
    if (manifest[at] !== FIXSTR16 || manifest.toString('latin1', at + 1, at + 17) !== SUM_PLACEHOLDER) return null;
    out[i] = at + 1;
  }
  return out;
}
