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
 * Counters are a plain object for src/metrics to read.
 */

import { BadRequestError, CorruptValueError, ErrorCode, errorMessage, KvtierError, ValkeyAuthError } from '../errors.js';
import { checksum } from './checksum.js';
import { decode, encode, type SerdeName } from './serde.js';
import type { Slab } from './host-memory.js';
import type { ChunkKey, Tier } from './tier.js';
import {
  chunkRedisKey,
  decodeValue,
  encodeValue,
  FORMAT_VERSION,
  segmentCount,
  segmentRange,
  segmentRedisKey,
  type ChunkHeader,
} from './valkey-format.js';
import { NativeDataPath, placeholderSums, sumOffsets, type DataPathInfo } from './valkey-native.js';
import { VALKEY_DEFAULTS as D, VALUE_HEADER_BYTES, requestCeilingMs, requestTimeInputs, type ValkeyTierCounters, type ValkeyTierOptions } from './valkey-options.js';
import { ValkeyPool, type LogFn, type PoolState, type ValkeyCommand, type ValkeyReply } from './valkey-pool.js';
import { parseValkeyUrl } from './valkey-url.js';

export type { ValkeyTierCounters, ValkeyTierOptions };

/** A manifest header fits in this many bytes up to thousands of segments. */
const HEADER_PROBE_BYTES = 65_536;
/** A manifest read by the native path lands in a buffer of this size; a bigger value goes through glide. */
const MANIFEST_CAP = 65_536;

/** What the segments of one chunk were, read natively: 'ok', 'missing', or why they are corrupt. */
type SegmentsRead = 'ok' | 'missing' | { corrupt: string };

function defaultLog(level: 'info' | 'warn' | 'error', message: string): void {
  if (level !== 'info') process.stderr.write(`kvtier ${level}: ${message}\n`);
}

function noop(): void {}

const EMPTY = Buffer.alloc(0);

function isReplyError(r: ValkeyReply): r is Error {
  return r instanceof Error;
}

function asBuffer(r: ValkeyReply): Buffer | null {
  return Buffer.isBuffer(r) ? r : null;
}

/** Keys per pipeline in deleteNamespace. */
const DELETE_BATCH = 512;

export class ValkeyTier implements Tier {
  readonly name = 'valkey' as const;
  readonly counters: ValkeyTierCounters = {
    stores: 0, skipped: 0, hits: 0, misses: 0, corrupt: 0, incomplete: 0,
    errors: 0, reconnects: 0, bytesIn: 0, bytesOut: 0,
  };
  #pool: ValkeyPool;
  #prefix: string;
  #ttl: number | undefined;
  #serde: SerdeName;
  #segmentBytes: number;
  #log: LogFn;
  #lastFailureLog = 0;
  #failuresSinceLog = 0;
  /** Per namespace, the shape of its last verified chunk; count 0: its chunks are inline values. */
  #segmentGuess = new Map<string, { count: number; seg: number; len: number }>();
  #listeners = new Set<(available: boolean, error?: KvtierError) => void>();
  #native: NativeDataPath | null = null;
  #dataPath: DataPathInfo = { path: 'glide', reason: 'choosing' };
  #nativeReady: Promise<void>;
  /** What each part of a native job gets once it starts: the same ceiling as any glide request. */
  #partTimeoutMs: number;
  #closed = false;

  /** Starts connecting in the background; see ValkeyTier.create to wait for it. */
  constructor(options: ValkeyTierOptions) {
    const endpoint = parseValkeyUrl(options.url, options.mode ? { mode: options.mode } : {});
    this.#prefix = options.keyPrefix ?? D.keyPrefix;
    this.#ttl = options.ttlSecs && options.ttlSecs > 0 ? Math.ceil(options.ttlSecs) : undefined;
    this.#serde = options.serde ?? D.serde;
    this.#segmentBytes = options.segmentBytes ?? D.segmentBytes;
    this.#log = options.log ?? defaultLog;
    if (options.onAvailability) this.#listeners.add(options.onAvailability);
    this.#partTimeoutMs = requestCeilingMs(requestTimeInputs(options));
    const connections = Math.max(1, options.connections ?? D.connections);
    const nativeOptions = { clusterSlots: () => this.#pool.clusterSlots(), log: this.#log };
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


  /**
   * A native job failed: true when a cluster node redirected it (MOVED/ASK:
   * not an error; the slot map is being refreshed and glide carries this
   * chunk). Otherwise it is counted, and a lost connection may mean a hung
   * server, which the PING probe tells.
   */
  #nativeFailed(native: NativeDataPath, what: string, e: unknown): boolean {
    const f = native.failed(e);
    if (f.redirect) {
      this.#log('info', `${what}: ${f.message.trim()}; slot map refresh, this chunk through glide`);
      return true;
    }
    this.counters.errors++;
    if (this.available) this.#warnFailure(`${what}: ${f.message.trim()}`);
    if (f.code === ErrorCode.KVT_VALKEY_UNAVAILABLE) void this.#pool.probe();
    return false;
  }

  onAvailability(listener: (available: boolean, error?: KvtierError) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The Valkey key of a chunk (its manifest when segmented). */
  keyOf(key: ChunkKey): string {
    return chunkRedisKey(this.#prefix, key);
  }

  async #run(commands: readonly ValkeyCommand[], bytes = 0): Promise<ValkeyReply[] | null> {
    if (!this.available) return null;
    try {
      return await this.#pool.run(commands, bytes);
    } catch (e) {
      this.counters.errors++;
      if (this.available) this.#warnFailure(errorMessage(e).trim());
      return null;
    }
  }

  /** At most one line per 10 s while requests keep failing (a node down, a slow link). */
  #warnFailure(message: string): void {
    const now = Date.now();
    this.#failuresSinceLog++;
    if (now - this.#lastFailureLog < 10_000) return;
    const more = this.#failuresSinceLog > 1 ? ` (${this.#failuresSinceLog} failures since the last report)` : '';
    this.#log('warn', `valkey request failed: ${message}${more}`);
    this.#lastFailureLog = now;
    this.#failuresSinceLog = 0;
  }

  async contains(keys: readonly ChunkKey[]): Promise<boolean[]> {
    if (keys.length === 0) return [];
    const names = keys.map((k) => this.keyOf(k));
    const out = await this.#run(names.map((key) => ({ op: 'exists', key })));
    if (!out) return keys.map(() => false);
    return out.map((r) => r === 1);
  }

  async put(key: ChunkKey, payload: Buffer): Promise<boolean> {
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
      header.sum = checksum(stored);
      ok = await this.#set(base, encodeValue(header, stored), ttl);
    } else {
      const n = segmentCount(stored.length, this.#segmentBytes);
      header.seg = this.#segmentBytes;
      const native = this.#native;
      if (native !== null) {
        header.segs = placeholderSums(n);
        const manifest = encodeValue(header);
        const offsets = sumOffsets(manifest, n);
        if (offsets !== null) {
          const done = await this.#writeNative(native, base, stored, manifest, offsets, n, ttl);
          if (done !== 'glide') return this.#putDone(done, stored.length);
        }
      }
      header.segs = [];
      const writes: Promise<boolean>[] = [];
      for (let i = 0; i < n; i++) {
        const [s, e] = segmentRange(header, i);
        const part = stored.subarray(s, e);
        header.segs.push(checksum(part));
        // Segments outlive their manifest by a minute so that an expiring
        // chunk disappears manifest first.
        writes.push(this.#set(segmentRedisKey(base, i), part, ttl === undefined ? undefined : ttl + 60));
      }
      ok = (await Promise.all(writes)).every(Boolean);
      if (ok) ok = await this.#set(base, encodeValue(header), ttl);
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

  /**
   * One native job: every segment, then the manifest. 'glide' when no
   * cluster node is known for the chunk's slot, or the node redirected it
   * (MOVED/ASK: no manifest was written); the caller then writes it through glide.
   */
  async #writeNative(native: NativeDataPath, base: string, stored: Buffer, manifest: Buffer, offsets: Uint32Array, n: number, ttl: number | undefined): Promise<boolean | 'glide'> {
    const keys = Array.from({ length: n }, (_, i) => segmentRedisKey(base, i));
    try {
      // Segments outlive their manifest by a minute, as on the glide path.
      const job = native.write(keys, stored, this.#segmentBytes, ttl === undefined ? 0 : ttl + 60, base, manifest, offsets, ttl ?? 0, this.#partTimeoutMs);
      if (job === null) return 'glide';
      await job;
      return true;
    } catch (e) {
      return this.#nativeFailed(native, `SET ${base} (${stored.length} bytes in ${n} segments)`, e) ? 'glide' : false;
    }
  }

  async #set(key: string, value: Buffer, ttlSecs: number | undefined): Promise<boolean> {
    const cmd: ValkeyCommand = ttlSecs === undefined ? { op: 'set', key, value } : { op: 'set', key, value, ttlSecs };
    const out = await this.#run([cmd], value.length);
    if (!out) return false;
    const r = out[0];
    if (isReplyError(r)) {
      this.counters.errors++;
      this.#warnFailure(`SET ${key} (${value.length} bytes) refused: ${r.message.trim()}`);
      return false;
    }
    return true;
  }

  async get(key: ChunkKey): Promise<Buffer | null> {
    return (await this.#read(key, undefined))?.buf ?? null;
  }

  /**
   * get() into memory the caller hands out (a host slab): no fresh allocation
   * per chunk, which on some hosts costs more than the network (page faults;
   * docs/valkey.md). `allocate` must return exactly `bytes` bytes, or null
   * (no room: a miss). The tier releases the slab itself on a miss.
   */
  getInto(key: ChunkKey, allocate: (bytes: number) => Slab | null): Promise<Slab | null> {
    return this.#read(key, allocate);
  }

  async #read(key: ChunkKey, allocate: ((bytes: number) => Slab | null) | undefined): Promise<Slab | null> {
    // After a redirect the whole chunk goes through glide: the map is being refreshed.
    let native = this.#native;
    if (native !== null && this.available) {
      const r = await this.#readNative(native, key, allocate);
      if (r === 'redirected') native = null;
      else if (r !== 'glide') return r;
    }
    const base = this.keyOf(key);
    // Chunks of one namespace have one size: fetch the segments the last
    // manifest of this namespace had alongside this manifest, instead of a
    // round trip later. Each is verified against the manifest that arrives.
    const guess = this.#segmentGuess.get(key.namespaceId);
    const early = guess && native === null ? Array.from({ length: guess.count }, (_, i) => this.#fetchSegment(base, i, guess.seg)) : [];
    // A namespace not read yet: its manifest natively too (a value over the
    // cap is an inline chunk, which glide reads, and the namespace is then
    // known to be inline). A namespace of inline chunks: glide.
    const value = native !== null && guess === undefined ? await this.#manifestNative(native, base) : await this.#getValue(base);
    if (!value) {
      this.counters.misses++;
      return null;
    }
    let segCount = 0;
    let slab: Slab | null = null;
    const take = (bytes: number): Slab | null => {
      const got = allocate ? allocate(bytes) : { buf: Buffer.allocUnsafe(bytes), release: noop };
      if (got && got.buf.length !== bytes) {
        got.release();
        throw new BadRequestError(`allocate(${bytes}) returned ${got.buf.length} bytes`);
      }
      slab = got;
      return got;
    };
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
        if (header.serde === 'naive' && !direct) return this.#miss();
        const usable = guess?.seg === header.seg ? early : [];
        const joined = direct?.buf ?? Buffer.allocUnsafe(header.len);
        let stored = native !== null ? await this.#segmentsNative(native, base, header, joined) : 'glide';
        if (stored === 'glide') stored = await this.#readSegments(base, header, joined, usable);
        if (!stored) {
          direct?.release();
          return this.#miss();
        }
        result = direct ?? (await this.#decodeInto(header, stored, take, allocate !== undefined));
      } else {
        if (checksum(payload) !== header.sum) throw new CorruptValueError(`${base}: checksum mismatch`);
        result = await this.#decodeInto(header, payload, take, allocate !== undefined);
      }
      if (!result) return this.#miss();
      // Only a chunk that verified teaches the namespace's shape: a forged
      // manifest must not make later reads allocate what it claims.
      this.#rememberShape(key.namespaceId, header);
      this.counters.hits++;
      this.counters.bytesIn += header.len;
      return result;
    } catch (e) {
      (slab as Slab | null)?.release();
      if (!(e instanceof CorruptValueError)) throw e;
      this.counters.corrupt++;
      this.counters.misses++;
      this.#log('warn', `valkey ${base}: ${e.message}; deleted`);
      await this.#deleteKeys(base, segCount);
      return null;
    }
  }

  async #getValue(base: string): Promise<Buffer | null> {
    const out = await this.#run([{ op: 'get', key: base }]);
    return out ? asBuffer(out[0]) : null;
  }

  /** The value under `base` read natively when it fits MANIFEST_CAP, else through glide. */
  async #manifestNative(native: NativeDataPath, base: string): Promise<Buffer | null> {
    let res;
    try {
      const job = native.read(base, MANIFEST_CAP, [], EMPTY, 1, this.#partTimeoutMs);
      if (job === null) return this.#getValue(base);
      res = await job;
    } catch (e) {
      // Redirected (cluster): glide reads it while the slot map is refreshed.
      return this.#nativeFailed(native, `GET ${base}`, e) ? this.#getValue(base) : null;
    }
    if (res.manifestState === 'too-long') return this.#getValue(base);
    return res.manifest;
  }

  /**
   * One native job for a chunk whose shape is known from its namespace's
   * last manifest: the manifest and every segment, the segments straight
   * into the slab. 'glide' when the shape is unknown or was not the guess,
   * or no node is known for the slot; 'redirected' after a MOVED/ASK.
   */
  async #readNative(native: NativeDataPath, key: ChunkKey, allocate: ((bytes: number) => Slab | null) | undefined): Promise<Slab | null | 'glide' | 'redirected'> {
    const guess = this.#segmentGuess.get(key.namespaceId);
    if (guess === undefined || guess.count === 0) return 'glide';
    const base = this.keyOf(key);
    const intoSlab = this.#serde === 'naive';
    let dest: Slab | null;
    if (intoSlab) {
      dest = allocate ? allocate(guess.len) : { buf: Buffer.allocUnsafe(guess.len), release: noop };
      if (dest === null) return this.#miss();
      if (dest.buf.length !== guess.len) {
        dest.release();
        throw new BadRequestError(`allocate(${guess.len}) returned ${dest.buf.length} bytes`);
      }
    } else {
      dest = { buf: Buffer.allocUnsafe(guess.len), release: noop };
    }
    const keys = Array.from({ length: guess.count }, (_, i) => segmentRedisKey(base, i));
    let res;
    try {
      const job = native.read(base, MANIFEST_CAP, keys, dest.buf, guess.seg, this.#partTimeoutMs);
      if (job === null) {
        dest.release();
        return 'glide';
      }
      res = await job;
    } catch (e) {
      dest.release();
      return this.#nativeFailed(native, `GET ${base}`, e) ? 'redirected' : this.#miss();
    }
    if (res.manifestState === 'nil') {
      dest.release();
      return this.#miss();
    }
    let header: ChunkHeader;
    try {
      if (res.manifest === null) throw new CorruptValueError(`${base}: manifest larger than ${MANIFEST_CAP} bytes`);
      header = decodeValue(res.manifest).header;
      if (header.ns !== key.namespaceId) throw new CorruptValueError(`${base} holds a chunk of namespace "${header.ns}"`);
    } catch (e) {
      dest.release();
      // An inline value over the cap, or anything that does not decode: glide reads it again and judges it.
      if (res.manifestState === 'too-long' || e instanceof CorruptValueError) return 'glide';
      throw e;
    }
    if (header.segs === undefined || header.len !== guess.len || header.seg !== guess.seg || header.segs.length !== guess.count) {
      dest.release();
      return 'glide';
    }
    const verdict = this.#judgeSegments(header, res.got, res.sums);
    if (verdict !== 'ok') {
      dest.release();
      return this.#segmentsFailed(base, header, verdict);
    }
    if (intoSlab && header.serde === 'naive') {
      this.#rememberShape(key.namespaceId, header);
      this.counters.hits++;
      this.counters.bytesIn += header.len;
      return dest;
    }
    // Another serde: the segments were staged; decode into a slab, then let the staging go.
    let out: Slab | null = null;
    try {
      out = await this.#decodeInto(header, dest.buf, (bytes) => {
        const got = allocate ? allocate(bytes) : { buf: Buffer.allocUnsafe(bytes), release: noop };
        out = got;
        return got;
      }, allocate !== undefined || intoSlab);
    } catch (e) {
      dest.release();
      (out as Slab | null)?.release();
      this.counters.corrupt++;
      this.#log('warn', `valkey ${base}: ${errorMessage(e)}; deleted`);
      await this.#deleteKeys(base, header.segs.length);
      return this.#miss();
    }
    if (out !== dest) dest.release();
    if (out === null) return this.#miss();
    this.#rememberShape(key.namespaceId, header);
    this.counters.hits++;
    this.counters.bytesIn += header.len;
    return out;
  }

  /** Compares what landed with the manifest: lengths, then checksums. */
  #judgeSegments(header: ChunkHeader, got: Float64Array, sums: string[]): SegmentsRead {
    let missing = false;
    const expected = header.segs ?? [];
    for (let i = 0; i < expected.length; i++) {
      const [s, e] = segmentRange(header, i);
      if (got[i] === -1) missing = true;
      else if (got[i] !== e - s) return { corrupt: `segment ${i} is not ${e - s} bytes` };
      else if (sums[i] !== expected[i]) return { corrupt: `segment ${i}: checksum mismatch` };
    }
    return missing ? 'missing' : 'ok';
  }

  /** A chunk whose segments did not all verify: deleted, a miss. */
  async #segmentsFailed(base: string, header: ChunkHeader, verdict: Exclude<SegmentsRead, 'ok'>): Promise<null> {
    const segs = header.segs?.length ?? 0;
    if (verdict === 'missing') {
      this.counters.incomplete++;
      this.#log('info', `valkey ${base}: segments missing (evicted or expired); deleted`);
    } else {
      this.counters.corrupt++;
      this.#log('warn', `valkey ${base}: ${verdict.corrupt}; deleted`);
    }
    await this.#deleteKeys(base, segs);
    return this.#miss();
  }

  /**
   * The segments of a manifest already read, natively into `joined`; null
   * for a miss; 'glide' when no node is known for the slot or it redirected.
   */
  async #segmentsNative(native: NativeDataPath, base: string, header: ChunkHeader, joined: Buffer): Promise<Buffer | null | 'glide'> {
    const n = header.segs?.length ?? 0;
    const keys = Array.from({ length: n }, (_, i) => segmentRedisKey(base, i));
    let res;
    try {
      const job = native.read('', 0, keys, joined, header.seg ?? header.len, this.#partTimeoutMs);
      if (job === null) return 'glide';
      res = await job;
    } catch (e) {
      return this.#nativeFailed(native, `GET ${base} segments`, e) ? 'glide' : null;
    }
    const verdict = this.#judgeSegments(header, res.got, res.sums);
    if (verdict === 'ok') return joined;
    if (typeof verdict === 'object') throw new CorruptValueError(`${base}: ${verdict.corrupt}`);
    if (verdict === 'missing') {
      this.counters.incomplete++;
      this.#log('info', `valkey ${base}: segments missing (evicted or expired); deleted`);
      await this.#deleteKeys(base, n);
    }
    return null;
  }

  #miss(): null {
    this.counters.misses++;
    return null;
  }

  /** Decoded bytes: a view of `stored` when nothing asks for a copy, else copied into a slab. */
  async #decodeInto(header: ChunkHeader, stored: Buffer, take: (bytes: number) => Slab | null, copy: boolean): Promise<Slab | null> {
    const raw = await decode(header.serde, stored, header.raw);
    if (!copy) return { buf: raw, release: noop };
    const slab = take(raw.length);
    if (slab) raw.copy(slab.buf);
    return slab;
  }

  #rememberShape(namespaceId: string, header: ChunkHeader): void {
    if (this.#segmentGuess.size >= 1024) this.#segmentGuess.clear();
    const segmented = header.segs !== undefined && header.seg !== undefined;
    this.#segmentGuess.set(namespaceId, segmented ? { count: header.segs!.length, seg: header.seg!, len: header.len } : { count: 0, seg: 0, len: header.len });
  }

  /** One segment's bytes, null when absent, 'down' when Valkey did not answer; never rejects. */
  async #fetchSegment(base: string, index: number, segBytes: number | undefined): Promise<Buffer | null | 'down'> {
    const out = await this.#run([{ op: 'get', key: segmentRedisKey(base, index) }], segBytes);
    return out ? asBuffer(out[0]) : 'down';
  }

  /**
   * Reads and verifies every segment into `joined` (using fetches already
   * under way in `early`); null for a miss (Valkey down, segment gone).
   */
  async #readSegments(base: string, header: ChunkHeader, joined: Buffer, early: Promise<Buffer | null | 'down'>[]): Promise<Buffer | null> {
    const sums = header.segs ?? [];
    const reads = sums.map(async (sum, i) => {
      const part = await (early[i] ?? this.#fetchSegment(base, i, header.seg));
      if (part === 'down') return 'down' as const;
      if (!part) return 'missing' as const;
      const [s, e] = segmentRange(header, i);
      if (part.length !== e - s) return `segment ${i} is ${part.length} bytes, expected ${e - s}`;
      if (checksum(part) !== sum) return `segment ${i}: checksum mismatch`;
      part.copy(joined, s);
      return 'ok' as const;
    });
    const results = await Promise.all(reads);
    if (results.includes('down')) return null;
    const bad = results.find((r) => r !== 'ok' && r !== 'missing');
    if (bad) throw new CorruptValueError(`${base}: ${bad}`);
    if (results.includes('missing')) {
      this.counters.incomplete++;
      this.#log('info', `valkey ${base}: segments missing (evicted or expired); deleted`);
      await this.#deleteKeys(base, sums.length);
      return null;
    }
    return joined;
  }

  async #deleteKeys(base: string, segments: number): Promise<number> {
    const keys = [base];
    for (let i = 0; i < segments; i++) keys.push(segmentRedisKey(base, i));
    const out = await this.#run([{ op: 'del', keys }]);
    const n = out?.[0];
    return typeof n === 'number' ? n : 0;
  }

  /**
   * Deletes chunks with their segments (the segment count comes from a
   * GETRANGE of the manifest's head); counts chunks that existed.
   */
  async delete(keys: readonly ChunkKey[]): Promise<number> {
    if (keys.length === 0) return 0;
    const bases = keys.map((k) => this.keyOf(k));
    const heads = await this.#run(bases.map((key) => ({ op: 'getrange', key, start: 0, end: HEADER_PROBE_BYTES - 1 })));
    if (!heads) return 0;
    const segs = heads.map((h) => {
      const b = asBuffer(h);
      if (!b || b.length === 0) return 0;
      try {
        const { header } = decodeValue(b);
        return header.segs?.length ?? 0;
      } catch {
        return 0;
      }
    });
    const dels = await this.#run(bases.map((base, i) => {
      const list = [base];
      for (let s = 0; s < segs[i]; s++) list.push(segmentRedisKey(base, s));
      return { op: 'del', keys: list } as const;
    }));
    if (!dels) return 0;
    return heads.reduce<number>((n, h) => n + (asBuffer(h)?.length ? 1 : 0), 0);
  }

  /**
   * Deletes every key of a namespace (chunks and their segments), found by
   * SCAN over `<prefix>:{<namespace id>:*`; counts the chunks (not segments).
   */
  async deleteNamespace(namespaceId: string): Promise<number> {
    if (!this.available) return 0;
    const keys = await this.#pool.scanKeys(`${this.#prefix}:{${namespaceId}:*`);
    let chunks = 0;
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const part = keys.slice(i, i + DELETE_BATCH);
      // One DEL per key: keys of different chunks may live in different cluster slots.
      const out = await this.#run(part.map((k) => ({ op: 'del', keys: [k] }) as const));
      if (out === null) break;
      for (const k of part) if (k.endsWith('}')) chunks++;
    }
    return chunks;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#native?.close();
    this.#native = null;
    await this.#pool.close();
  }
}
