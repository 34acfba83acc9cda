/**
 * The Valkey tier: chunks shared by every worker that points at one Valkey.
 *
 * put:  encode (serde) ─▶ small: one SET of header+payload
 *                        └▶ large: SET every segment in parallel over the
 *                           connections, then SET the manifest (last, so a
 *                           reader never sees a half-written chunk)
 * get:  GET key ─▶ inline: verify ─▶ decode
 *                └▶ manifest: GET segments in parallel, verify each, join, decode
 *
 * Everything that fails on the read side is a miss (null) and never an
 * exception: a bad value is deleted and counted. Valkey being down means
 * put() returns false and get()/contains() miss; ValkeyPool reconnects.
 * Counters are a plain object for src/metrics to read. This file chooses
 * the path and keeps the inline-value read; valkey-io.ts runs commands,
 * valkey-segments.ts and valkey-native-io.ts move segments, valkey-delete.ts
 * removes chunks.
 */

import { CorruptValueError, errorMessage, KvtierError, ValkeyAuthError } from '../errors.js';
import { payloadChecksum } from './checksum.js';
import type { ChunkId } from './chunk-id.js';
import type { Slab } from './host-memory.js';
import { encode, type SerdeName } from './serde.js';
import type { RemoteTier } from './tier.js';
import { deleteChunks, deleteNamespace } from './valkey-delete.js';
import { valkeyChunkBytes, valkeyNamespacesOf, valkeyUsage, type ValkeyUsage } from './valkey-admin.js';
import { decodeValue, encodeValue, FORMAT_VERSION, segmentCount, segmentRange, segmentRedisKey, type ChunkHeader } from './valkey-format.js';
import { noop, takeSlab, ValkeyIo } from './valkey-io.js';
import { NativeDataPath, placeholderSums, sumOffsets, type DataPathInfo } from './valkey-native.js';
import { manifestNative, readNative, segmentsNative, writeNative } from './valkey-native-io.js';
import { VALKEY_DEFAULTS as D, VALUE_HEADER_BYTES, requestCeilingMs, requestTimeInputs, type ValkeyTierCounters, type ValkeyTierOptions } from './valkey-options.js';
import { ValkeyPool, type LogFn, type PoolState } from './valkey-pool.js';
import { readSegments } from './valkey-segments.js';
import { parseValkeyUrl } from './valkey-url.js';

function defaultLog(level: 'info' | 'warn' | 'error', message: string): void {
  if (level !== 'info') process.stderr.write(`kvtier ${level}: ${message}\n`);
}

export type { ValkeyTierCounters, ValkeyTierOptions };

export class ValkeyTier implements RemoteTier {
  readonly name = 'valkey' as const;
  readonly counters: ValkeyTierCounters = {
    stores: 0, skipped: 0, hits: 0, misses: 0, corrupt: 0, incomplete: 0,
    errors: 0, reconnects: 0, bytesIn: 0, bytesOut: 0,
  };
  #pool: ValkeyPool;
  #io: ValkeyIo;
  #prefix: string;
  #ttl: number | undefined;
  #serde: SerdeName;
  #segmentBytes: number;
  #log: LogFn;
  #listeners = new Set<(available: boolean, error?: KvtierError) => void>();
  #native: NativeDataPath | null = null;
  #dataPath: DataPathInfo = { path: 'glide', reason: 'choosing' };
  #nativeReady: Promise<void>;
  #closed = false;
  /** Per namespace whose chunk shape is not known yet: the read learning it. */
  #learning = new Map<string, Promise<void>>();

  /** Starts connecting in the background; see ValkeyTier.create to wait for it. */
  constructor(options: ValkeyTierOptions) {
    const endpoint = parseValkeyUrl(options.url, options.mode ? { mode: options.mode } : {});
    this.#prefix = options.keyPrefix ?? D.keyPrefix;
    this.#ttl = options.ttlSecs && options.ttlSecs > 0 ? Math.ceil(options.ttlSecs) : undefined;
    this.#serde = options.serde ?? D.serde;
    this.#segmentBytes = options.segmentBytes ?? D.segmentBytes;
    this.#log = options.log ?? defaultLog;
    if (options.onAvailability) this.#listeners.add(options.onAvailability);
    const connections = Math.max(1, options.connections ?? D.connections);
    const nativeOptions = {
      clusterSlots: () => this.#pool.clusterSlots(), log: this.#log,
      tls: { insecure: options.tlsInsecure ?? false, ...(options.tlsRootCertificates ? { rootCertificates: options.tlsRootCertificates } : {}) },
    };
    this.#nativeReady = NativeDataPath.open(endpoint, options.dataPath ?? 'auto', connections, options.connectTimeoutMs ?? D.connectTimeoutMs, nativeOptions).then(({ path, info }) => {
      if (this.#closed) {
        path?.close();
        return;
      }
      this.#native = path;
      this.#dataPath = info;
      // A cluster's slot map: now if already up, else when the pool comes up.
      if (this.available) void path?.refresh();
      if (options.dataPath === 'native' && path === null) this.#log('warn', `valkey_data_path native unavailable: ${info.reason}; using glide`);
    });
    this.#pool = new ValkeyPool({
      endpoint,
      connections: Math.max(1, options.connections ?? D.connections),
      requestTimeoutMs: options.requestTimeoutMs ?? D.requestTimeoutMs,
      minBytesPerSec: options.minBytesPerSec ?? D.minBytesPerSec,
      connectTimeoutMs: options.connectTimeoutMs ?? D.connectTimeoutMs,
      reconnectMinMs: options.reconnectMinMs ?? D.reconnectMinMs,
      reconnectMaxMs: options.reconnectMaxMs ?? D.reconnectMaxMs,
      bulkPerConnection: Math.max(1, options.bulkPerConnection ?? D.bulkPerConnection),
      // A segment, or an unsegmented chunk, plus its header.
      maxValueBytes: this.#segmentBytes + VALUE_HEADER_BYTES,
      tlsInsecure: options.tlsInsecure ?? false,
      ...(options.tlsRootCertificates ? { tlsRootCertificates: options.tlsRootCertificates } : {}),
      log: this.#log,
      onState: (state: PoolState, error?: KvtierError) => {
        this.counters.reconnects = this.#pool?.reconnects ?? 0;
        // Down (a failed PING, a lost connection): native parts running or queued fail now, as glide's do.
        if (state === 'down') this.#native?.abort(`valkey ${endpoint.redacted} is down: ${error?.message ?? 'connection lost'}`);
        // Up again: the cluster may have changed while it was away.
        if (state === 'up') void this.#native?.refresh(true);
        if (state === 'up' || state === 'down') {
          for (const l of this.#listeners) l(state === 'up', error);
        }
      },
    });
    this.#io = new ValkeyIo(this.#pool, this.counters, this.#log, this.#serde, requestCeilingMs(requestTimeInputs(options)));
  }

  /**
   * A tier after its first connection attempt. Valkey unreachable: a tier
   * that is down and keeps retrying. Wrong credentials: ValkeyAuthError.
   */
  static async create(options: ValkeyTierOptions): Promise<ValkeyTier> {
    const tier = new ValkeyTier(options);
    await tier.ready();
    const err = tier.#pool.lastError;
    if (err instanceof ValkeyAuthError) {
      await tier.close();
      throw err;
    }
    return tier;
  }

  get available(): boolean {
    return this.#pool.state === 'up';
  }

  /** Why the tier is down, when it is. */
  get lastError(): KvtierError | undefined {
    return this.#pool.lastError;
  }

  /** Resolves once the first connection attempt is over (up or down), with a cluster's first slot map when up. */
  async ready(): Promise<void> {
    await Promise.all([this.#pool.firstAttempt(), this.#nativeReady]);
    if (this.available) await this.#native?.refresh();
  }

  /** Which path carries the bulk bytes, and why. */
  get dataPath(): DataPathInfo {
    return this.#native?.info ?? this.#dataPath;
  }

  /** Counters, the data path and its own counters, for stats and metrics. */
  stats(): Record<string, unknown> {
    const dp = this.dataPath;
    return { ...this.counters, dataPath: dp.path, dataPathReason: dp.reason, native: this.#native?.stats() ?? null };
  }


  onAvailability(listener: (available: boolean, error?: KvtierError) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The Valkey key of a chunk (its manifest when segmented). */
  keyOf(key: ChunkId): string {
    return key.valkeyKey(this.#prefix);
  }

  async contains(keys: readonly ChunkId[]): Promise<boolean[]> {
    if (keys.length === 0) return [];
    const names = keys.map((k) => this.keyOf(k));
    const out = await this.#io.run(names.map((key) => ({ op: 'exists', key })));
    if (!out) return keys.map(() => false);
    return out.map((r) => r === 1);
  }

  async put(key: ChunkId, payload: Buffer): Promise<boolean> {
    const base = this.keyOf(key);
    if (!this.available) {
      this.counters.skipped++;
      return false;
    }
    let stored: Buffer;
    try {
      stored = await encode(this.#serde, payload);
    } catch (e) {
      this.#log('warn', `valkey put ${base}: ${this.#serde} encode failed: ${errorMessage(e)}`);
      this.counters.skipped++;
      return false;
    }
    const header: ChunkHeader = { v: FORMAT_VERSION, ns: key.namespaceId, serde: this.#serde, raw: payload.length, len: stored.length };
    const ttl = this.#ttl;
    let ok: boolean;
    if (stored.length <= this.#segmentBytes) {
      header.sum = payloadChecksum(stored);
      ok = await this.#io.set(base, encodeValue(header, stored), ttl);
    } else {
      const n = segmentCount(stored.length, this.#segmentBytes);
      header.seg = this.#segmentBytes;
      const native = this.#native;
      if (native !== null) {
        header.segs = placeholderSums(n);
        const manifest = encodeValue(header);
        const offsets = sumOffsets(manifest, n);
        if (offsets !== null) {
          const done = await writeNative(this.#io, native, base, stored, this.#segmentBytes, manifest, offsets, n, ttl);
          if (done !== 'glide') return this.#putDone(done, stored.length);
        }
      }
      header.segs = [];
      const writes: Promise<boolean>[] = [];
      for (let i = 0; i < n; i++) {
        const [s, e] = segmentRange(header, i);
        const part = stored.subarray(s, e);
        header.segs.push(payloadChecksum(part));
        // Segments outlive their manifest by a minute so that an expiring
        // chunk disappears manifest first.
        writes.push(this.#io.set(segmentRedisKey(base, i), part, ttl === undefined ? undefined : ttl + 60));
      }
      ok = (await Promise.all(writes)).every(Boolean);
      if (ok) ok = await this.#io.set(base, encodeValue(header), ttl);
    }
    return this.#putDone(ok, stored.length);
  }

  #putDone(ok: boolean, bytes: number): boolean {
    if (ok) {
      this.counters.stores++;
      this.counters.bytesOut += bytes;
    } else {
      this.counters.skipped++;
    }
    return ok;
  }

  async get(key: ChunkId): Promise<Buffer | null> {
    return (await this.#read(key, undefined))?.buf ?? null;
  }

  /**
   * get() into memory the caller hands out (a host slab): no fresh allocation
   * per chunk, which on some hosts costs more than the network (page faults;
   * docs/valkey.md). `allocate` must return exactly `bytes` bytes, or null
   * (no room: a miss). The tier releases the slab itself on a miss.
   */
  getInto(key: ChunkId, allocate: (bytes: number) => Slab | null): Promise<Slab | null> {
    return this.#read(key, allocate);
  }

  /**
   * A namespace whose chunk shape is not known yet (a fresh daemon's first
   * Lookup of a long prompt): one read learns it from a manifest while the
   * others wait for that, then each reads its manifest and segments in one
   * job, instead of every read queueing its manifest GET ahead of all the
   * segments (a 32K-token Valkey hit's first chunk landed after 180 ms).
   */
  async #read(key: ChunkId, allocate: ((bytes: number) => Slab | null) | undefined): Promise<Slab | null> {
    const ns = key.namespaceId;
    if (!this.#io.shapes.has(ns)) {
      const learner = this.#learning.get(ns);
      if (learner !== undefined) {
        await learner;
      } else {
        const read = this.#readChunk(key, allocate);
        const settled = read.then(noop, noop).then(() => {
          if (this.#learning.get(ns) === settled) this.#learning.delete(ns);
        });
        this.#learning.set(ns, settled);
        return read;
      }
    }
    return this.#readChunk(key, allocate);
  }

  async #readChunk(key: ChunkId, allocate: ((bytes: number) => Slab | null) | undefined): Promise<Slab | null> {
    // After a redirect the whole chunk goes through glide: the map is being refreshed.
    let native = this.#native;
    if (native !== null && this.available) {
      const r = await readNative(this.#io, native, key, this.keyOf(key), allocate);
      if (r === 'redirected') native = null;
      else if (r !== 'glide') return r;
    }
    const base = this.keyOf(key);
    // Chunks of one namespace have one size: fetch the segments the last
    // manifest of this namespace had alongside this manifest, instead of a
    // round trip later. Each is verified against the manifest that arrives.
    const guess = this.#io.shapes.get(key.namespaceId);
    const early = guess && native === null ? Array.from({ length: guess.count }, (_, i) => this.#io.fetchSegment(base, i, guess.seg)) : [];
    // A namespace not read yet: its manifest natively too (a value over the
    // cap is an inline chunk, which glide reads, and the namespace is then
    // known to be inline). A namespace of inline chunks: glide.
    const value = native !== null && guess === undefined ? await manifestNative(this.#io, native, base) : await this.#io.getValue(base);
    if (!value) {
      this.counters.misses++;
      return null;
    }
    let segCount = 0;
    let slab: Slab | null = null;
    const take = (bytes: number): Slab | null => (slab = takeSlab(allocate, bytes));
    try {
      const { header, payload } = decodeValue(value);
      if (header.ns !== key.namespaceId) {
        throw new CorruptValueError(`${base} holds a chunk of namespace "${header.ns}"`);
      }
      segCount = header.segs?.length ?? 0;
      let result: Slab | null;
      if (header.segs) {
        // naive: segments land in their final place; otherwise in a staging buffer.
        const direct = header.serde === 'naive' ? take(header.len) : null;
        if (header.serde === 'naive' && !direct) return this.#io.miss();
        const usable = guess?.seg === header.seg ? early : [];
        const joined = direct?.buf ?? Buffer.allocUnsafe(header.len);
        let stored = native !== null ? await segmentsNative(this.#io, native, base, header, joined) : 'glide';
        if (stored === 'glide') stored = await readSegments(this.#io, base, header, joined, usable);
        if (!stored) {
          direct?.release();
          return this.#io.miss();
        }
        result = direct ?? (await this.#io.decodeInto(header, stored, take, allocate !== undefined));
      } else {
        if (payloadChecksum(payload) !== header.sum) throw new CorruptValueError(`${base}: checksum mismatch`);
        result = await this.#io.decodeInto(header, payload, take, allocate !== undefined);
      }
      if (!result) return this.#io.miss();
      this.#io.hit(key.namespaceId, header);
      return result;
    } catch (e) {
      (slab as Slab | null)?.release();
      if (!(e instanceof CorruptValueError)) throw e;
      this.counters.corrupt++;
      this.counters.misses++;
      this.#log('warn', `valkey ${base}: ${e.message}; deleted`);
      await this.#io.deleteKeys(base, segCount);
      return null;
    }
  }

  /** Deletes chunks with their segments; counts chunks that existed. */
  delete(keys: readonly ChunkId[]): Promise<number> {
    return deleteChunks(this.#io, keys.map((k) => this.keyOf(k)));
  }

  /** Deletes every key of a namespace (chunks and their segments); counts the chunks. */
  deleteNamespace(namespaceId: string): Promise<number> {
    return deleteNamespace(this.#io, this.#prefix, namespaceId);
  }

  /** Chunks and bytes per namespace (admin: a SCAN of the keyspace). */
  usage(namespaceId: string | null): Promise<Map<string, ValkeyUsage>> {
    return valkeyUsage(this.#io, this.#prefix, namespaceId);
  }

  /** Stored bytes of each chunk, 0 where absent (admin). */
  chunkBytes(keys: readonly ChunkId[]): Promise<number[]> {
    return valkeyChunkBytes(this.#io, keys.map((k) => this.keyOf(k)));
  }

  /** Namespaces that hold a chunk of this hash (admin: a SCAN). */
  namespacesOf(hash: string): Promise<string[]> {
    return valkeyNamespacesOf(this.#io, this.#prefix, hash);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#native?.close();
    this.#native = null;
    await this.#pool.close();
  }
}
