/**
 * What every part of the Valkey tier shares: the pool, the counters, the
 * failure log throttle, and the per-namespace chunk shape.
 *
 *   valkey-tier.ts         put / get / contains; picks the data path
 *   valkey-segments.ts     segments of a large chunk through glide
 *   valkey-native-io.ts    the same jobs on the native data path
 *   valkey-delete.ts       delete and deleteNamespace
 *        └──── all run their commands through ValkeyIo.run ────┘
 *
 * A failed request is counted and logged here (at most one line per 10 s)
 * and comes back as null: the read side turns that into a miss, the write
 * side into false. Internal to the tier; nothing outside src/tiers uses it.
 */
import { BadRequestError, ErrorCode, errorMessage } from '../errors.js';
import type { Slab } from './host-memory.js';
import { decode, type SerdeName } from './serde.js';
import { segmentRedisKey, type ChunkHeader } from './valkey-format.js';
import type { NativeDataPath } from './valkey-native.js';
import type { ValkeyTierCounters } from './valkey-options.js';
import type { LogFn, ValkeyCommand, ValkeyPool, ValkeyReply } from './valkey-pool.js';

export function noop(): void {}

/** A cluster redirect as glide words it ("Moved: 14916 host:port") or the server does ("MOVED ...", "ASK ...", "TRYAGAIN ..."). */
const REDIRECT_REPLY = /\b(moved|ask|tryagain)\b/i;

export function isReplyError(r: ValkeyReply): r is Error {
  return r instanceof Error;
}

export function asBuffer(r: ValkeyReply): Buffer | null {
  return Buffer.isBuffer(r) ? r : null;
}

/** A slab from `allocate`, or a plain Buffer without one; checked to be exactly `bytes`. */
export function takeSlab(allocate: ((bytes: number) => Slab | null) | undefined, bytes: number): Slab | null {
  const got = allocate ? allocate(bytes) : { buf: Buffer.allocUnsafe(bytes), release: noop };
  if (got && got.buf.length !== bytes) {
    got.release();
    throw new BadRequestError(`allocate(${bytes}) returned ${got.buf.length} bytes`);
  }
  return got;
}

export interface ChunkShape {
  /** Segments per chunk; 0: the namespace's chunks are inline values. */
  count: number;
  seg: number;
  len: number;
}

export class ValkeyIo {
  readonly pool: ValkeyPool;
  readonly counters: ValkeyTierCounters;
  readonly log: LogFn;
  readonly serde: SerdeName;
  /** What each part of a native job gets once it starts: the same ceiling as any glide request. */
  readonly partTimeoutMs: number;
  /** Per namespace, the shape of its last verified chunk. */
  readonly shapes = new Map<string, ChunkShape>();
  #lastFailureLog = 0;
  #failuresSinceLog = 0;

  constructor(pool: ValkeyPool, counters: ValkeyTierCounters, log: LogFn, serde: SerdeName, partTimeoutMs: number) {
    this.pool = pool;
    this.counters = counters;
    this.log = log;
    this.serde = serde;
    this.partTimeoutMs = partTimeoutMs;
  }

  get available(): boolean {
    return this.pool.state === 'up';
  }

  async run(commands: readonly ValkeyCommand[], bytes = 0): Promise<ValkeyReply[] | null> {
    if (!this.available) return null;
    try {
      return await this.pool.run(commands, bytes);
    } catch (e) {
      this.counters.errors++;
      if (this.available) this.warnFailure(errorMessage(e).trim());
      return null;
    }
  }

  /** At most one line per 10 s while requests keep failing (a node down, a slow link). */
  warnFailure(message: string): void {
    const now = Date.now();
    this.#failuresSinceLog++;
    if (now - this.#lastFailureLog < 10_000) return;
    const more = this.#failuresSinceLog > 1 ? ` (${this.#failuresSinceLog} failures since the last report)` : '';
    this.log('warn', `valkey request failed: ${message}${more}`);
    this.#lastFailureLog = now;
    this.#failuresSinceLog = 0;
  }

  /**
   * A native job failed: true when a cluster node redirected it (MOVED/ASK:
   * not an error; the slot map is being refreshed and glide carries this
   * chunk). Otherwise it is counted, and a lost connection may mean a hung
   * server, which the PING probe tells.
   */
  nativeFailed(native: NativeDataPath, what: string, e: unknown): boolean {
    const f = native.failed(e);
    if (f.redirect) {
      this.log('info', `${what}: ${f.message.trim()}; this chunk through glide`);
      return true;
    }
    this.counters.errors++;
    if (this.available) this.warnFailure(`${what}: ${f.message.trim()}`);
    if (f.code === ErrorCode.KVT_VALKEY_UNAVAILABLE) void this.pool.probe();
    return false;
  }

  async set(key: string, value: Buffer, ttlSecs: number | undefined): Promise<boolean> {
    const cmd: ValkeyCommand = ttlSecs === undefined ? { op: 'set', key, value } : { op: 'set', key, value, ttlSecs };
    return (await this.#runOne(cmd, value.length, () => `SET ${key} (${value.length} bytes)`)) !== 'down';
  }

  /**
   * One command's reply; 'down' when there is no answer to trust (counted
   * and logged when the server refused it). glide can hand back a
   * MOVED/ASK/TRYAGAIN reply around a slot's handover instead of following
   * it (seen on a real reshard: test/tiers/valkey-migrate.test.ts): that is
   * sent once more. The callers never take an error reply for an absent
   * key: that would make a stored chunk's segments look evicted and get
   * the chunk deleted.
   */
  async #runOne(cmd: ValkeyCommand, bytes: number, what: () => string): Promise<ValkeyReply | 'down'> {
    for (let attempt = 0; ; attempt++) {
      const out = await this.run([cmd], bytes);
      if (!out) return 'down';
      const r = out[0];
      if (!isReplyError(r)) return r;
      if (attempt === 0 && REDIRECT_REPLY.test(r.message)) continue;
      this.counters.errors++;
      this.warnFailure(`${what()} refused: ${r.message.trim()}`);
      return 'down';
    }
  }

  async getValue(base: string): Promise<Buffer | null> {
    const got = await this.#runOne({ op: 'get', key: base }, 0, () => `GET ${base}`);
    return got === 'down' ? null : asBuffer(got);
  }

  /** One segment's bytes, null when absent, 'down' when Valkey did not answer (or refused); never rejects. */
  async fetchSegment(base: string, index: number, segBytes: number | undefined): Promise<Buffer | null | 'down'> {
    const key = segmentRedisKey(base, index);
    const got = await this.#runOne({ op: 'get', key }, segBytes ?? 0, () => `GET ${key}`);
    return got === 'down' ? got : asBuffer(got);
  }

  async deleteKeys(base: string, segments: number): Promise<number> {
    const keys = [base];
    for (let i = 0; i < segments; i++) keys.push(segmentRedisKey(base, i));
    const out = await this.run([{ op: 'del', keys }]);
    const n = out?.[0];
    return typeof n === 'number' ? n : 0;
  }

  miss(): null {
    this.counters.misses++;
    return null;
  }

  /**
   * A chunk that verified: counted, and it teaches its namespace's shape.
   * Only verified chunks do, so a forged manifest cannot make later reads
   * allocate what it claims.
   */
  hit(namespaceId: string, header: ChunkHeader): void {
    if (this.shapes.size >= 1024) this.shapes.clear();
    const segmented = header.segs !== undefined && header.seg !== undefined;
    this.shapes.set(namespaceId, segmented ? { count: header.segs!.length, seg: header.seg!, len: header.len } : { count: 0, seg: 0, len: header.len });
    this.counters.hits++;
    this.counters.bytesIn += header.len;
  }

  /** Decoded bytes: a view of `stored` when nothing asks for a copy, else copied into a slab. */
  async decodeInto(header: ChunkHeader, stored: Buffer, take: (bytes: number) => Slab | null, copy: boolean): Promise<Slab | null> {
    const raw = await decode(header.serde, stored, header.raw);
    if (!copy) return { buf: raw, release: noop };
    const slab = take(raw.length);
    if (slab) raw.copy(slab.buf);
    return slab;
  }
}
