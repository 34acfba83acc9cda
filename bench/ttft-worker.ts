/**
 * The worker side of the model-mode TTFT bench: a KV cache in real shm files
 * laid out as vLLM's flash-attn backend lays it out (one file per layer,
 * tensor (2, num_blocks, 16, kv_heads, head_dim), K plane then V plane),
 * registered with a daemon over the socket, and block-form Store/Retrieve of
 * whole prompts through it.
 *
 * The region holds `window` chunks, not the whole context (a 128K-token
 * Llama-3.1-8B context is 16 GiB): chunk i lives in slot i mod window, and
 * requests are cut into windows of distinct block ids, so every byte of
 * every chunk still moves through the daemon. Layer files hold random bytes,
 * different per layer; after a retrieve into a zeroed region the files must
 * equal the pattern again, which checks that the right bytes came back.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { KvtierClient } from '../src/protocol/client.js';
import { kvBytesPerToken, type ModelShape } from './ttft-shapes.js';

const BLOCK = 16;
const CHUNK_TOKENS = 256;
const PER_CHUNK = CHUNK_TOKENS / BLOCK;

export class ShmKvCache {
  readonly chunkBytes: number;
  readonly window: number;
  readonly files: string[];
  readonly #layerBytes: number;
  readonly #blockBytes: number;
  readonly #pattern: Buffer;

  constructor(shape: ModelShape, regionBytes: number, tag: string) {
    this.chunkBytes = kvBytesPerToken(shape) * CHUNK_TOKENS;
    this.window = Math.max(1, Math.floor(regionBytes / this.chunkBytes));
    this.#blockBytes = BLOCK * shape.kvHeadsPerRank * shape.headDim * shape.elemBytes;
    this.#layerBytes = 2 * this.window * PER_CHUNK * this.#blockBytes;
    this.#pattern = randomBytes(this.#layerBytes + shape.layers * 4096);
    this.files = Array.from({ length: shape.layers }, (_, l) => `/dev/shm/kvtier-ttft-${process.pid}-${tag}-${l}`);
    this.files.forEach((f, l) => writeFileSync(f, this.#layerPattern(l)));
  }

  get regionBytes(): number {
    return this.#layerBytes * this.files.length;
  }

  #layerPattern(l: number): Buffer {
    return this.#pattern.subarray(l * 4096, l * 4096 + this.#layerBytes);
  }

  async register(client: KvtierClient): Promise<void> {
    const numBlocks = this.window * PER_CHUNK;
    const ok = await client.registerKv({
      regions: this.files.map((f, l) => ({ regionId: l, sizeBytes: this.#layerBytes, shmPath: f })),
      planes: this.files.flatMap((_, l) => [0, 1].map((kv) => ({
        layer: l, regionId: l, offset: kv * numBlocks * this.#blockBytes, blockStride: this.#blockBytes, blockBytes: this.#blockBytes,
      }))),
      numBlocks,
      blockSize: BLOCK,
    });
    if (Number(ok.chunkBytes) !== this.chunkBytes) throw new Error(`daemon computed ${ok.chunkBytes} bytes per chunk, expected ${this.chunkBytes}`);
  }

  /** Block ids of `count` chunks starting at chunk `first`, slot = chunk mod window. */
  blockIds(first: number, count: number): Buffer {
    const ids = new Uint32Array(count * PER_CHUNK);
    for (let c = 0; c < count; c++) {
      const slot = (first + c) % this.window;
      for (let b = 0; b < PER_CHUNK; b++) ids[c * PER_CHUNK + b] = slot * PER_CHUNK + b;
    }
    return Buffer.from(ids.buffer);
  }

  /** Overwrites the region in place (no truncation: the daemon has it mapped). */
  zero(): void {
    const zeros = Buffer.alloc(this.#layerBytes);
    for (const f of this.files) {
      const fd = openSync(f, 'r+');
      try {
        writeSync(fd, zeros, 0, zeros.length, 0);
      } finally {
        closeSync(fd);
      }
    }
  }

  /** True when every slot the last retrieve covered holds the stored bytes again. */
  verify(chunksRetrieved: number): boolean {
    const slots = Math.min(this.window, chunksRetrieved);
    const numBlocks = this.window * PER_CHUNK;
    return this.files.every((f, l) => {
      const got = readFileSync(f);
      const want = this.#layerPattern(l);
      for (const kv of [0, 1]) {
        const from = kv * numBlocks * this.#blockBytes;
        const to = from + slots * PER_CHUNK * this.#blockBytes;
        if (!got.subarray(from, to).equals(want.subarray(from, to))) return false;
      }
      return true;
    });
  }

  cleanup(): void {
    for (const f of this.files) rmSync(f, { force: true });
  }
}

/** Stores every full chunk of `tokens` in windows; resolves when Valkey has them too. */
export async function storeAll(client: KvtierClient, kv: ShmKvCache, tokens: Buffer, chunks: number): Promise<{ stored: number; committed: number; failed: number }> {
  let stored = 0;
  const pending: Array<Promise<{ committedChunks: number; failedChunks: number }>> = [];
  for (let first = 0; first < chunks; first += kv.window) {
    const end = Math.min(chunks, first + kv.window);
    // Block ids index chunks from 0; the skipped ones are not read.
    const h = await client.store({ address: { tokens: tokens.subarray(0, end * CHUNK_TOKENS * 4) }, blockIds: kv.blockIds(0, end), skipChunks: first });
    stored += h.copied.storedChunks + h.copied.presentChunks;
    pending.push(h.committed);
  }
  const done = await Promise.all(pending);
  return { stored, committed: done.reduce((n, d) => n + d.committedChunks, 0), failed: done.reduce((n, d) => n + d.failedChunks, 0) };
}

export interface LoadTiming {
  lookupMs: number;
  retrieveMs: number;
  hitChunks: number;
  hostChunks: number;
  /** Of hitChunks, found on local disk (LookupOk.disk_chunks). */
  diskChunks: number;
  valkeyChunks: number;
  loaded: number;
  failed: number;
  windows: number;
}

/** What a worker does at the start of a request: Lookup, then Retrieve every hit chunk into its blocks. */
export async function lookupAndLoad(client: KvtierClient, kv: ShmKvCache, tokens: Buffer): Promise<LoadTiming> {
  const t0 = performance.now();
  const l = await client.lookup({ tokens });
  const t1 = performance.now();
  let loaded = 0;
  let failed = 0;
  let windows = 0;
  for (let first = 0; first < l.hitChunks; first += kv.window) {
    const num = Math.min(kv.window, l.hitChunks - first);
    const r = await client.retrieve({ leaseId: l.leaseId, firstChunk: first, numChunks: num, blockIds: kv.blockIds(first, num) });
    loaded += r.loadedChunks;
    failed += r.failedChunks;
    windows++;
  }
  const t2 = performance.now();
  if (Number(l.leaseId) !== 0) await client.releaseLease(l.leaseId);
  return { lookupMs: t1 - t0, retrieveMs: t2 - t1, hitChunks: l.hitChunks, hostChunks: l.hostChunks, diskChunks: l.diskChunks, valkeyChunks: l.valkeyChunks, loaded, failed, windows };
}

/**
 * The inline path, for contexts the native pool cannot hold (see
 * NATIVE_POOL_MAX in ./ttft-model.ts): a daemon on a heap pool, chunks sent
 * in Store frames and returned in RetrieveDone frames through the socket,
 * `window` chunks per request. The worker keeps the bytes in its own memory;
 * there is no scatter into blocks. Chunk i is pattern slot i mod window.
 */
export class InlineKv {
  readonly chunkBytes: number;
  readonly window: number;
  readonly #pattern: Buffer;

  constructor(shape: ModelShape, window: number) {
    this.chunkBytes = kvBytesPerToken(shape) * CHUNK_TOKENS;
    this.window = window;
    this.#pattern = randomBytes(window * this.chunkBytes);
  }

  chunk(i: number): Buffer {
    const slot = i % this.window;
    return this.#pattern.subarray(slot * this.chunkBytes, (slot + 1) * this.chunkBytes);
  }
}

export async function storeAllInline(client: KvtierClient, kv: InlineKv, tokens: Buffer, chunks: number): Promise<{ stored: number; committed: number; failed: number }> {
  let stored = 0;
  const pending: Array<Promise<{ committedChunks: number; failedChunks: number }>> = [];
  for (let first = 0; first < chunks; first += kv.window) {
    const end = Math.min(chunks, first + kv.window);
    const payload = Array.from({ length: end - first }, (_, j) => kv.chunk(first + j));
    const h = await client.store({ address: { tokens: tokens.subarray(0, end * CHUNK_TOKENS * 4) }, chunks: payload, skipChunks: first });
    stored += h.copied.storedChunks + h.copied.presentChunks;
    pending.push(h.committed);
  }
  const done = await Promise.all(pending);
  return { stored, committed: done.reduce((n, d) => n + d.committedChunks, 0), failed: done.reduce((n, d) => n + d.failedChunks, 0) };
}

/**
 * Lookup, then inline Retrieve of every hit chunk, `window` per request.
 * Each window is checked byte for byte as it arrives (and then dropped, so
 * a 5 GiB context never sits in the bench's memory); the check is not
 * timed: retrieveMs is the sum of the Retrieve round trips.
 */
export async function lookupAndLoadInline(client: KvtierClient, kv: InlineKv, tokens: Buffer, check: boolean): Promise<LoadTiming & { verified: boolean | null }> {
  const t0 = performance.now();
  const l = await client.lookup({ tokens });
  const lookupMs = performance.now() - t0;
  let retrieveMs = 0;
  let loaded = 0;
  let failed = 0;
  let windows = 0;
  let verified: boolean | null = check ? true : null;
  for (let first = 0; first < l.hitChunks; first += kv.window) {
    const num = Math.min(kv.window, l.hitChunks - first);
    const t = performance.now();
    const r = await client.retrieve({ leaseId: l.leaseId, firstChunk: first, numChunks: num });
    retrieveMs += performance.now() - t;
    loaded += r.loadedChunks;
    failed += r.failedChunks;
    windows++;
    if (check) r.chunks.forEach((c, j) => {
      if (c.length > 0 && !Buffer.from(c.buffer, c.byteOffset, c.byteLength).equals(kv.chunk(first + j))) verified = false;
    });
  }
  if (Number(l.leaseId) !== 0) await client.releaseLease(l.leaseId);
  return { lookupMs, retrieveMs, hitChunks: l.hitChunks, hostChunks: l.hostChunks, diskChunks: l.diskChunks, valkeyChunks: l.valkeyChunks, loaded, failed, windows, verified };
}

/** Called around the timed part of a load, for counters read over exactly that span. */
export interface LoadSpan {
  start(): void;
  end(): void;
}

/** One way for the bench's worker to move its KV: block form (shm + native) or inline. */
export interface WorkerPath {
  readonly path: 'blocks' | 'inline';
  readonly chunkBytes: number;
  readonly window: number;
  /** Daemon settings this path needs. */
  readonly env: Record<string, string>;
  attach(client: KvtierClient): Promise<void>;
  store(client: KvtierClient, tokens: Buffer, chunks: number): Promise<{ stored: number; committed: number; failed: number }>;
  /**
   * A timed Lookup + Retrieve of every hit chunk; with `check`, the worker's
   * memory is cleared first and the bytes that arrived are compared
   * (untimed). Without, `verified` is null. `span` is told when the timed
   * part starts and ends (the inline path's checks fall inside it).
   */
  load(client: KvtierClient, tokens: Buffer, chunks: number, check: boolean, span?: LoadSpan): Promise<LoadTiming & { verified: boolean | null }>;
  cleanup(): void;
}

export function blocksPath(shape: ModelShape, regionBytes: number, tag: string): WorkerPath {
  const kv = new ShmKvCache(shape, regionBytes, tag);
  return {
    path: 'blocks', chunkBytes: kv.chunkBytes, window: kv.window, env: {},
    attach: (c) => kv.register(c),
    store: (c, tokens, chunks) => storeAll(c, kv, tokens, chunks),
    load: async (c, tokens, chunks, check, span) => {
      if (check) kv.zero();
      span?.start();
      const t = await lookupAndLoad(c, kv, tokens);
      span?.end();
      return { ...t, verified: check ? kv.verify(chunks) : null };
    },
    cleanup: () => kv.cleanup(),
  };
}

export function inlinePath(shape: ModelShape, window: number): WorkerPath {
  const kv = new InlineKv(shape, window);
  return {
    path: 'inline', chunkBytes: kv.chunkBytes, window, env: { KVTIER_HOST_MEMORY: 'heap' },
    attach: async () => {},
    store: (c, tokens, chunks) => storeAllInline(c, kv, tokens, chunks),
    load: async (c, tokens, _chunks, check, span) => {
      span?.start();
      const t = await lookupAndLoadInline(c, kv, tokens, check);
      span?.end();
      return t;
    },
    cleanup: () => {},
  };
}
