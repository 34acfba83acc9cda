/**
 * The Valkey tier's bulk bytes in native code: segment writes and reads go
 * between host slabs and Valkey sockets on the addon's I/O threads
 * (native/src/valkey/), one completion per chunk, no JS Buffer per segment.
 *
 *   write  JS packs the manifest with placeholder checksums; the I/O thread
 *          computes each segment's xxh64, patches it in, SETs the segments
 *          (writev from the slab) and then the manifest, on one connection.
 *   read   GETs (manifest +) segments pipelined; each segment's bytes land in
 *          place in the slab and are hashed there; JS compares the sums with
 *          the manifest before anything is handed on.
 *
 * Used for single-node, plain-TCP endpoints when the addon is built. TLS and
 * cluster endpoints, and inline (unsegmented) values, stay on glide; why is
 * in `reason`, which stats and doctor show.
 */

import type { ValkeyLinkBinding, ValkeyReadResult } from '../../native/index.js';
import { errorMessage } from '../errors.js';
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

/** A failed native job: `code` says whether the connection (not just this chunk) is in doubt. */
export interface NativeFailure {
  code: string;
  message: string;
}

export function failureOf(e: unknown): NativeFailure {
  const code = (e as { code?: unknown } | null)?.code;
  return { code: typeof code === 'string' ? code : 'KVT_NATIVE', message: errorMessage(e) };
}

export class NativeDataPath {
  readonly #link: ValkeyLinkBinding;

  private constructor(link: ValkeyLinkBinding) {
    this.#link = link;
  }

  /**
   * The native path for `endpoint`, or why not. `choice` 'glide' forces the
   * fallback; 'native' makes an unusable native path an error for the caller
   * to report.
   */
  static async open(endpoint: ValkeyEndpoint, choice: DataPathChoice, connections: number, connectTimeoutMs: number): Promise<{ path: NativeDataPath | null; info: DataPathInfo }> {
    const glide = (reason: string): { path: null; info: DataPathInfo } => ({ path: null, info: { path: 'glide', reason } });
    if (choice === 'glide') return glide('valkey_data_path: glide');
    if (endpoint.tls) return glide('TLS endpoint: the native path speaks plain TCP only (glide carries TLS)');
    if (endpoint.mode === 'cluster') return glide('cluster endpoint: the native path serves single nodes so far');
    let mod: typeof import('../../native/index.js');
    try {
      mod = await import('../../native/index.js');
      const a = endpoint.addresses[0];
      const link = mod.openValkeyLink({
        host: a.host, port: a.port, username: endpoint.username, password: endpoint.password, db: endpoint.databaseId,
        connections, connectTimeoutMs, pipelineBytes: PIPELINE_BYTES,
      });
      return { path: new NativeDataPath(link), info: { path: 'native', reason: `addon I/O threads, ${connections} connections to ${a.host}:${a.port}` } };
    } catch (e) {
      return glide(`native addon unavailable: ${errorMessage(e)}`);
    }
  }

  /**
   * The segments of `stored`, then its manifest (`manifest`, packed with
   * placeholderSums(); `sumOffsets` from sumOffsets()).
   */
  write(segKeys: string[], stored: Buffer, segBytes: number, segTtl: number, manifestKey: string, manifest: Buffer, sumOffsets: Uint32Array, ttl: number, timeoutMs: number): Promise<void> {
    return this.#link.write(segKeys, stored, segBytes, segTtl, manifestKey, manifest, sumOffsets, ttl, timeoutMs);
  }

  /** Segments into `dest` (and the manifest, up to manifestCap bytes, when manifestKey is not ''). */
  read(manifestKey: string, manifestCap: number, segKeys: string[], dest: Buffer, segBytes: number, timeoutMs: number): Promise<ValkeyReadResult> {
    return this.#link.read(manifestKey, manifestCap, segKeys, dest, segBytes, timeoutMs);
  }

  /** The server is down or hung: fail every part, running or queued, now (connections reopen on the next job). */
  abort(why: string): number {
    return this.#link.abort(why);
  }

  stats(): ReturnType<ValkeyLinkBinding['stats']> {
    return this.#link.stats();
  }

  close(): void {
    this.#link.close();
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
