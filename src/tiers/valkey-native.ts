/**
 * The Valkey tier's bulk bytes in native code: segment writes and reads go
 * between host slabs and Valkey sockets on the addon's I/O threads
 * (native/src/valkey/), one completion per chunk, no JS Buffer per segment.
 *
 *   write  JS packs the manifest with placeholder checksums; the I/O threads
 *          compute each segment's sum (XXH3-64), patch it in, SET the segments
 *          (writev from the slab, in parts spread over the connections) and
 *          then the manifest, once every part succeeded.
 *   read   GETs (manifest +) segments pipelined; each segment's bytes land in
 *          place in the slab and are hashed there; JS compares the sums with
 *          the manifest before anything is handed on.
 *
 * Single node: one link. Cluster: one link per master, opened when a chunk
 * first goes to it and closed when the node leaves the slot map; a chunk is
 * one slot (valkey-slots.ts), so one job on one link. The map comes from
 * glide (CLUSTER SLOTS), refreshed after a MOVED or a lost node, at most
 * one fetch in flight; without a map, or for a slot without a node, the
 * chunk goes through glide. A redirected job is retried natively once
 * (#followOnce), and only then does its chunk go through glide:
 *   MOVED  the slot has a new owner, so every key of the chunk is there:
 *          the map is refreshed and the whole job runs again at that node.
 *   ASK    the slot is half moved, keys on both nodes: no map refresh. A
 *          read runs again at the named node with ASKING before each GET,
 *          and counts only if every key was there (a nil there may be a
 *          key not moved yet, never an eviction). A write is not retried:
 *          a whole chunk SET at the importing node would put keys there
 *          that the old owner still holds (MIGRATE then fails, BUSYKEY);
 *          glide follows ASK command by command.
 * TLS runs on node's own OpenSSL (the addon links none of its own); inline
 * (unsegmented) values stay on glide. Why a tier is
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
const REDIRECT = /refused: (MOVED|ASK) (\d+) (\S+)/;

/** Where a server redirected a job, parsed from its failure. */
export interface Redirect {
  kind: 'MOVED' | 'ASK';
  slot: number;
  /** host:port of the node to ask instead. */
  addr: string;
}

export function redirectOf(e: unknown): Redirect | null {
  if ((e as { code?: unknown } | null)?.code !== ErrorCode.KVT_VALKEY_REFUSED) return null;
  const m = REDIRECT.exec(errorMessage(e));
  return m ? { kind: m[1] as Redirect['kind'], slot: Number(m[2]), addr: m[3] } : null;
}

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
  return { code: c, message, redirect: redirectOf(e) !== null };
}

export interface NativeStats {
  jobs: number;
  failures: number;
  reconnects: number;
  bytesOut: number;
  bytesIn: number;
  /** Parts of jobs (pipelined segment runs) a connection took. */
  parts: number;
  /** Time the links' connections spent running parts, summed over connections: near connections x wall time when the link is saturated. */
  busyMs: number;
  /** Time parts waited between submit and a connection taking them, summed over parts. */
  waitMs: number;
  /** Connections per link (valkey_connections). */
  connections: number;
  /** Links open now (one per node in use). */
  nodes: number;
  /** Jobs a cluster node answered with MOVED/ASK. */
  redirects: number;
  /** Of those, ASK (no map refresh). */
  askRedirects: number;
  /** Redirected jobs run again natively at the named node. */
  redirectRetries: number;
  /** Redirected chunks then carried by glide: an ASKed write, a retry that was redirected or found a key not moved yet. */
  redirectsToGlide: number;
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

type LinkCounters = Omit<NativeStats, 'connections' | 'nodes' | 'redirects' | 'askRedirects' | 'redirectRetries' | 'redirectsToGlide' | 'mapRefreshes'>;

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
  #retired: LinkCounters = { jobs: 0, failures: 0, reconnects: 0, bytesOut: 0, bytesIn: 0, parts: 0, busyMs: 0, waitMs: 0 };
  #redirects = 0;
  #askRedirects = 0;
  #redirectRetries = 0;
  #redirectsToGlide = 0;
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
      mod.nativePayloadSum(Buffer.alloc(0));
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
    return this.#linkAt(map.nodes[i]);
  }

  /**
   * The segments of `stored`, then its manifest (`manifest`, packed with
   * placeholderSums(); `sumOffsets` from sumOffsets()). null: no node known
   * for the chunk's slot, nothing sent (the caller writes through glide).
   */
  write(segKeys: string[], stored: Buffer, segBytes: number, segTtl: number, manifestKey: string, manifest: Buffer, sumOffsets: Uint32Array, ttl: number, timeoutMs: number): Promise<void> | null {
    const link = this.#linkFor(manifestKey);
    const job = (l: ValkeyLinkBinding): Promise<void> => l.write(segKeys, stored, segBytes, segTtl, manifestKey, manifest, sumOffsets, ttl, timeoutMs);
    return link && this.#followOnce(job(link), (r) => (r.kind === 'MOVED' ? job(this.#linkAt(r.addr)) : null));
  }

  /**
   * Segments into `dest` (and the manifest, up to manifestCap bytes, when
   * manifestKey is not ''). null: no node known for the chunk's slot.
   */
  read(manifestKey: string, manifestCap: number, segKeys: string[], dest: Buffer, segBytes: number, timeoutMs: number): Promise<ValkeyReadResult> | null {
    const link = this.#linkFor(manifestKey !== '' ? manifestKey : (segKeys[0] ?? ''));
    if (link === null) return null;
    return this.#followOnce(link.read(manifestKey, manifestCap, segKeys, dest, segBytes, timeoutMs, false), (r, first) => {
      const asking = r.kind === 'ASK';
      return this.#linkAt(r.addr).read(manifestKey, manifestCap, segKeys, dest, segBytes, timeoutMs, asking).then((res) => {
        // At an importing node a nil is a key still at the old owner: glide follows ASK per key.
        if (asking && (res.manifestState === 'nil' || res.got.some((g) => g === -1))) throw first;
        return res;
      });
    });
  }

  /**
   * `job`, and after a MOVED/ASK the retry `again` makes (null: none; then
   * the redirect is the caller's, who sends the chunk through glide). A
   * MOVED refreshes the map, in the background: the retry already knows
   * its node.
   */
  async #followOnce<T>(job: Promise<T>, again: (r: Redirect, first: unknown) => Promise<T> | null): Promise<T> {
    try {
      return await job;
    } catch (e) {
      const r = this.#single ? null : redirectOf(e);
      if (r === null) throw e;
      this.#redirects++;
      if (r.kind === 'ASK') this.#askRedirects++;
      else void this.refresh(true);
      const retry = this.#closed ? null : again(r, e);
      if (retry === null) {
        this.#redirectsToGlide++;
        throw e;
      }
      this.#redirectRetries++;
      this.#log('info', `valkey native path: ${errorMessage(e).trim()}; retried natively at ${r.addr}${r.kind === 'ASK' ? ' (ASKING)' : ''}`);
      try {
        return await retry;
      } catch (e2) {
        // Redirected again (or found a key not moved yet): glide carries the chunk.
        if (redirectOf(e2) !== null) this.#redirectsToGlide++;
        throw e2;
      }
    }
  }

  /** The link to `addr` (host:port), opened if none is: a redirect's node, perhaps not in the map yet. */
  #linkAt(addr: string): ValkeyLinkBinding {
    let link = this.#links.get(addr);
    if (link === undefined) {
      const { host, port } = splitAddress(addr);
      link = this.#openLink(host, port);
      this.#links.set(addr, link);
    }
    return link;
  }

  /**
   * What a failed job means (after #followOnce): a lost node makes a
   * cluster's slot map suspect, so it is fetched again. The chunk itself
   * is the caller's: glide after a redirect, a skip or miss otherwise.
   */
  failed(e: unknown): NativeFailure {
    const f = failureOf(e);
    if (this.#fetchSlots && f.code === ErrorCode.KVT_VALKEY_UNAVAILABLE) void this.refresh(true);
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
    return {
      ...sum, connections: this.#connections, nodes: this.#allLinks().length, redirects: this.#redirects, askRedirects: this.#askRedirects,
      redirectRetries: this.#redirectRetries, redirectsToGlide: this.#redirectsToGlide, mapRefreshes: this.#mapRefreshes,
    };
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
