/**
 * One client connection: frames in, requests dispatched, responses out.
 *
 * Requests are handled concurrently and answered in completion order with
 * their own id, so a client may pipeline. Those that need no I/O (Ping,
 * Hello, Stats, ReleaseLease) are answered in the turn that read them, with
 * no promise in between: they are the socket's round trip. The first
 * request must be Hello, which fixes the connection's namespace. Domain
 * errors become Error frames here and only here; a broken frame stream
 * (oversized length) is answered once and the connection closed. Whatever
 * the connection holds (leases, registered KV regions) is released when it
 * closes, however it closes.
 *
 * A connection the daemon gives up on (broken framing, idle past
 * idle_connection_timeout_ms, shutdown) is ended, given FLUSH_MS to drain
 * its last frames, then destroyed: it never stays half-open or paused
 * waiting for a FIN nobody reads.
 */
import type { Socket } from 'node:net';
import {
  BadFrameError, BadRequestError, ErrorCode, KvtierError, NamespaceMismatchError, NotHelloError, NotRegisteredError,
  ProtocolVersionError, UnknownMessageError, errorMessage, isKvtierError,
} from '../errors.js';
import type { Logger } from '../log.js';
import { makeNamespace, type Namespace } from '../chunking/namespace.js';
import type { BlockCopier, ChunkAddress, ChunkManager } from '../manager/chunk-manager.js';
import { FrameDecoder } from './framing.js';
import { PROTOCOL_VERSION, decodeEnvelope, encodeFrame, type Envelope, type EnvelopeInit } from './messages.js';
import { u32View } from './u32.js';
import type { kvtier } from './gen/kvtier.js';
import type { PeerCredentials } from './peer.js';

/** A worker's registered KV memory, as the native addon opens it. */
export interface RegisteredKv extends BlockCopier {
  readonly backend: string;
  close(): Promise<void>;
}

/**
 * Maps a worker's KV memory. `peer` is the connecting process as the kernel
 * saw it (null when it could not be read): shm files must be owned by its uid.
 */
export type KvRegistrar = (spec: kvtier.v1.IRegisterKv, chunkTokens: number, peer: PeerCredentials | null) => Promise<RegisteredKv>;

export interface ConnectionContext {
  manager: ChunkManager;
  chunkSize: number;
  maxFrameBytes: number;
  maxChunkBytes: number;
  saveUnfullChunk: boolean;
  serverVersion: string;
  registrar: KvRegistrar | null;
  /** Close a connection after this long without I/O, nothing in flight and no registered KV; 0: never. */
  idleTimeoutMs: number;
  logger: Logger;
  statsJson(): string;
}

/** Connections the daemon closed on its own, by reason (shown in stats and metrics). */
export interface ClosedConnectionCounts {
  badFrame: number;
  idle: number;
}

export interface ConnectionInit {
  peer: PeerCredentials | null;
  closed: ClosedConnectionCounts;
  onClose(c: Connection): void;
}

/** How long a connection being closed may take to flush its last frames before it is destroyed. */
export const FLUSH_MS = 1000;

/**
 * Per-connection bounds: past them the connection stops reading (TCP-style
 * backpressure on the Unix socket) until it drains, so one client pipelining
 * without end, or never reading its answers, cannot grow the daemon's memory.
 */
const MAX_IN_FLIGHT = 256;
const MAX_UNSENT_BYTES = 64 * 1024 * 1024;

/** A request's answer without its id; null: the handler sent its own frames (Store, inline Retrieve). */
type Reply = Omit<EnvelopeInit, 'id'> | null;

const REQUESTS: ReadonlySet<string> = new Set([
  'hello', 'ping', 'stats', 'lookup', 'releaseLease', 'put', 'get', 'exists', 'store', 'retrieve',
  'invalidate', 'registerKv', 'unregister',
]);

export class Connection {
  readonly id: number;
  readonly #socket: Socket;
  readonly #ctx: ConnectionContext;
  readonly #decoder: FrameDecoder;
  readonly #log: Logger;
  readonly #peer: PeerCredentials | null;
  readonly #closedCounts: ClosedConnectionCounts;
  #ns: Namespace | null = null;
  #kv: RegisteredKv | null = null;
  #inFlight = 0;
  #closed = false;
  #broken = false;
  #paused = false;
  #ending = false;
  /** Everyone waiting in idle(): server.close() and #release() may both wait at once. */
  #idleWaiters: Array<() => void> = [];

  constructor(id: number, socket: Socket, ctx: ConnectionContext, init: ConnectionInit) {
    this.id = id;
    this.#socket = socket;
    this.#ctx = ctx;
    this.#peer = init.peer;
    this.#closedCounts = init.closed;
    this.#log = ctx.logger.child({ conn: id });
    this.#decoder = new FrameDecoder(ctx.maxFrameBytes);
    socket.on('data', (data: Buffer) => this.#onData(data));
    socket.on('error', (e) => this.#log.debug('socket error', { error: e.message }));
    socket.on('drain', () => this.#flow());
    socket.on('close', () => {
      void this.#release().finally(() => init.onClose(this));
    });
    if (ctx.idleTimeoutMs > 0) {
      // Node's socket timer: re-armed by every read and write, no timer per request.
      socket.setTimeout(ctx.idleTimeoutMs);
      socket.on('timeout', () => this.#onTimeout());
    }
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Resolves when no request of this connection is running. */
  idle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#idleWaiters.push(resolve);
    });
  }

  /** Ends the connection: its last frames get FLUSH_MS to drain, then it is destroyed. */
  end(): void {
    if (this.#ending) return;
    this.#ending = true;
    const socket = this.#socket;
    const timer = setTimeout(() => socket.destroy(), FLUSH_MS);
    socket.once('close', () => clearTimeout(timer));
    // 'finish': everything written has gone to the kernel; the peer reads it
    // from there after the close. Reads stop mattering: resume so a paused
    // socket does not hold the FIN back.
    socket.end(() => socket.destroy());
    socket.resume();
  }

  #onData(data: Buffer): void {
    if (this.#broken) return;
    let frames: Buffer[];
    try {
      frames = this.#decoder.push(data);
    } catch (e) {
      // The stream can no longer be split into frames: answer once, then close.
      this.#send({ id: 0, error: this.#errorBody(e) });
      this.#broken = true;
      this.#closedCounts.badFrame++;
      this.end();
      return;
    }
    for (const frame of frames) this.#onFrame(frame);
  }

  #onTimeout(): void {
    if (this.#inFlight > 0 || this.#kv !== null || this.#ending) return;
    this.#log.debug('closing an idle connection', { idleMs: this.#ctx.idleTimeoutMs });
    this.#closedCounts.idle++;
    this.#broken = true;
    this.end();
  }

  #onFrame(frame: Buffer): void {
    let env: Envelope;
    try {
      env = decodeEnvelope(frame);
    } catch (e) {
      this.#send({ id: 0, error: this.#errorBody(new BadFrameError(`undecodable envelope: ${errorMessage(e)}`)) });
      return;
    }
    const id = env.id;
    let handled: Reply | Promise<Reply>;
    try {
      handled = this.#handle(env);
      // A Lookup reads its token bytes only in the synchronous part of the
      // handler (hashing happens before the first await): its frame's memory
      // can go back to the decoder now. Other requests keep theirs.
      if (env.body === 'lookup') this.#decoder.reclaim(frame);
      if (!(handled instanceof Promise)) {
        // Answered without waiting (Ping, Hello, Stats, ReleaseLease): sent
        // in this turn, with no promise hops in between.
        if (handled !== null) this.#send({ id, ...handled });
        return;
      }
    } catch (e) {
      if (env.body === 'lookup') this.#decoder.reclaim(frame);
      this.#send({ id, error: this.#errorBody(e) });
      return;
    }
    this.#inFlight++;
    this.#flow();
    handled.then(
      (reply) => this.#answer(id, reply),
      (e: unknown) => this.#answer(id, e, true),
    );
  }

  /** Sends an I/O request's answer (or its error) and counts it done. */
  #answer(id: number, result: unknown, failed = false): void {
    try {
      if (failed) this.#send({ id, error: this.#errorBody(result) });
      else if (result !== null) this.#send({ id, ...(result as NonNullable<Reply>) });
    } catch (e) {
      this.#send({ id, error: this.#errorBody(e) });
    }
    this.#settled();
  }

  #settled(): void {
    this.#inFlight--;
    this.#flow();
    if (this.#inFlight === 0 && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Pauses reading past the per-connection bounds, resumes below half of them. */
  #flow(): void {
    if (this.#broken || this.#closed) return;
    const unsent = this.#socket.writableLength;
    if (!this.#paused && (this.#inFlight >= MAX_IN_FLIGHT || unsent > MAX_UNSENT_BYTES)) {
      this.#paused = true;
      this.#socket.pause();
    } else if (this.#paused && this.#inFlight < MAX_IN_FLIGHT / 2 && unsent <= MAX_UNSENT_BYTES / 2) {
      this.#paused = false;
      this.#socket.resume();
    }
  }

  #send(msg: EnvelopeInit): void {
    if (this.#closed || this.#socket.destroyed || !this.#socket.writable) return;
    this.#socket.write(encodeFrame(msg));
    this.#flow();
  }

  #errorBody(e: unknown): { code: string; message: string } {
    if (isKvtierError(e)) return { code: e.code, message: e.message };
    this.#log.error('internal error', { error: errorMessage(e), stack: e instanceof Error ? e.stack ?? null : null });
    return { code: ErrorCode.KVT_INTERNAL, message: errorMessage(e) };
  }

  #namespace(): Namespace {
    if (this.#ns === null) throw new NotHelloError();
    return this.#ns;
  }

  /**
   * Requests that need no I/O are answered here and now; the others return
   * the Promise of their answer. Throws (or rejects with) domain errors.
   */
  #handle(env: Envelope): Reply | Promise<Reply> {
    switch (env.body) {
      case 'hello':
        return { helloOk: this.#hello(env.hello!) };
      case 'ping':
        return { pong: {} };
      case 'stats':
        return { statsOk: { json: this.#ctx.statsJson() } };
      case undefined:
        throw new UnknownMessageError('envelope has no known body (a newer client, or garbage)');
      default:
        if (!REQUESTS.has(env.body)) throw new UnknownMessageError(`${env.body} is a response, not a request`);
    }
    const ns = this.#namespace();
    if (env.body === 'releaseLease') {
      this.#ctx.manager.releaseLease(ns, num(env.releaseLease!.leaseId));
      return { ack: {} };
    }
    return this.#handleIo(ns, env);
  }

  async #handleIo(ns: Namespace, env: Envelope): Promise<Reply> {
    const m = this.#ctx.manager;
    switch (env.body) {
      case 'lookup': {
        const req = env.lookup!;
        const r = await m.lookup(ns, address(req.address), { owner: this.id, ttlMs: req.leaseTtlMs || undefined, noLease: req.noLease === true });
        return { lookupOk: { hitTokens: r.hitTokens, hitChunks: r.hitChunks, hostChunks: r.hostChunks, valkeyChunks: r.remoteChunks, leaseId: r.leaseId } };
      }
      case 'put': {
        const req = env.put!;
        if (req.key == null || req.key.length === 0) throw new BadRequestError('expected a non-empty key for Put');
        const stored = await m.put(ns, req.key, asBuffer(req.value));
        return req.wantPutOk === true ? { putOk: { stored } } : { ack: {} };
      }
      case 'get': {
        const req = env.get!;
        if (req.key == null || req.key.length === 0) throw new BadRequestError('expected a non-empty key for Get');
        const value = await m.get(ns, req.key);
        return { getOk: value === null ? { found: false } : { found: true, value } };
      }
      case 'exists': {
        const found = await m.exists(ns, env.exists!.keys ?? []);
        let prefix = 0;
        while (prefix < found.length && found[prefix]) prefix++;
        return { existsOk: { prefixFound: prefix, found } };
      }
      case 'store':
        return this.#store(ns, env);
      case 'retrieve':
        return this.#retrieve(ns, env.id, env.retrieve!);
      case 'invalidate': {
        const a = env.invalidate!.address;
        const empty = a == null || ((a.tokens == null || a.tokens.length === 0) && (a.keys == null || a.keys.length === 0));
        return { invalidateOk: { removedChunks: await m.invalidate(ns, empty ? null : address(a)) } };
      }
      case 'registerKv':
        return this.#register(env.registerKv!);
      case 'unregister':
        await this.#unregister();
        return { ack: {} };
      default:
        throw new UnknownMessageError(`${env.body} is not handled`);
    }
  }

  #hello(req: kvtier.v1.IHello): kvtier.v1.IHelloOk {
    if (req.protocolVersion !== PROTOCOL_VERSION) throw new ProtocolVersionError(req.protocolVersion ?? 0, PROTOCOL_VERSION);
    const fp = req.fingerprint ?? {};
    const chunkSize = fp.chunkSize || this.#ctx.chunkSize;
    if (chunkSize !== this.#ctx.chunkSize) {
      throw new NamespaceMismatchError(`client chunk_size ${chunkSize} differs from the daemon's ${this.#ctx.chunkSize}`);
    }
    if (this.#ns !== null) throw new BadRequestError('Hello was already sent on this connection');
    this.#ns = makeNamespace({
      model: fp.model ?? '', dtype: fp.dtype ?? '', kvLayout: fp.kvLayout ?? '', chunkSize,
      blockSize: fp.blockSize ?? 0, tpRank: fp.tpRank ?? 0, tpSize: fp.tpSize ?? 0, ppRank: fp.ppRank ?? 0,
      ppSize: fp.ppSize ?? 0, mla: fp.mla === true, cacheSalt: fp.cacheSalt ?? '',
    });
    this.#log.debug('hello', { namespace: this.#ns.id, client: req.clientKind ?? '' });
    return {
      protocolVersion: PROTOCOL_VERSION, namespaceId: this.#ns.id, chunkSize, maxFrameBytes: this.#ctx.maxFrameBytes,
      maxChunkBytes: this.#ctx.maxChunkBytes, saveUnfullChunk: this.#ctx.saveUnfullChunk, serverVersion: this.#ctx.serverVersion,
    };
  }

  async #store(ns: Namespace, env: Envelope): Promise<null> {
    const req = env.store!;
    const id = env.id;
    const addr = address(req.address);
    const skip = req.skipChunks ?? 0;
    let r;
    if (req.blockIds != null && req.blockIds.length > 0) {
      if (this.#kv === null) throw new NotRegisteredError();
      r = await this.#ctx.manager.store(ns, addr, { kind: 'blocks', blockIds: u32View(req.blockIds, 'block_ids'), copier: this.#kv }, skip);
    } else {
      const chunks = (req.chunks ?? []).map(asBuffer);
      for (const c of chunks) {
        if (c.length > this.#ctx.maxChunkBytes) throw new BadRequestError(`chunk of ${c.length} bytes exceeds the ${this.#ctx.maxChunkBytes}-byte limit`);
      }
      r = await this.#ctx.manager.store(ns, addr, { kind: 'inline', chunks }, skip);
    }
    this.#send({ id, storeCopied: { storedChunks: r.stored, presentChunks: r.present, skippedChunks: r.skipped } });
    const c = await r.committed;
    this.#send({ id, storeCommitted: { committedChunks: c.committed, failedChunks: c.failed } });
    return null;
  }

  async #retrieve(ns: Namespace, id: number, req: kvtier.v1.IRetrieve): Promise<Omit<EnvelopeInit, 'id'> | null> {
    const leaseId = num(req.leaseId);
    const first = req.firstChunk ?? 0;
    const count = req.numChunks ?? 0;
    if (req.blockIds != null && req.blockIds.length > 0) {
      if (this.#kv === null) throw new NotRegisteredError();
      const r = await this.#ctx.manager.retrieveBlocks(ns, leaseId, first, count, u32View(req.blockIds, 'block_ids'), this.#kv);
      const failed = Buffer.from(r.failedBlocks.buffer, r.failedBlocks.byteOffset, r.failedBlocks.byteLength);
      return { retrieveDone: { loadedChunks: r.loaded, failedChunks: r.failed, failedBlockIds: failed } };
    }
    const r = await this.#ctx.manager.retrieveInline(ns, leaseId, first, count);
    try {
      const chunks = r.chunks.map((c) => c ?? Buffer.alloc(0));
      const loaded = r.chunks.filter((c) => c !== null).length;
      // Sent while the slabs are still pinned: the frame holds its own copy afterwards.
      this.#send({ id, retrieveDone: { chunks, loadedChunks: loaded, failedChunks: chunks.length - loaded } });
      return null;
    } finally {
      r.done();
    }
  }

  async #register(req: kvtier.v1.IRegisterKv): Promise<Omit<EnvelopeInit, 'id'>> {
    if (this.#ctx.registrar === null) throw new KvtierError(ErrorCode.KVT_NATIVE, 'this daemon has no native addon loaded: block-form transfers are unavailable');
    await this.#unregister();
    this.#kv = await this.#ctx.registrar(req, this.#ctx.chunkSize, this.#peer);
    return { registerKvOk: { chunkBytes: this.#kv.chunkBytes, backend: this.#kv.backend } };
  }

  async #unregister(): Promise<void> {
    const kv = this.#kv;
    this.#kv = null;
    if (kv !== null) await kv.close();
  }

  async #release(): Promise<void> {
    this.#closed = true;
    const leases = this.#ctx.manager.releaseOwner(this.id);
    await this.idle();
    await this.#unregister().catch((e: unknown) => this.#log.warn('unregister on close failed', { error: errorMessage(e) }));
    this.#log.debug('connection closed', { leasesReleased: leases });
  }
}

function address(a: kvtier.v1.IChunkAddress | null | undefined): ChunkAddress {
  if (a == null) throw new BadRequestError('expected a chunk address (tokens or keys)');
  const hasTokens = a.tokens != null && a.tokens.length > 0;
  const hasKeys = a.keys != null && a.keys.length > 0;
  if (hasTokens && hasKeys) throw new BadRequestError('expected tokens or keys in the chunk address, not both');
  if (hasKeys) return { keys: a.keys! };
  return { tokens: a.tokens ?? new Uint8Array(0) };
}

function asBuffer(b: Uint8Array | null | undefined): Buffer {
  if (b == null) return Buffer.alloc(0);
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function num(v: number | Long | null | undefined): number {
  if (v == null) return 0;
  return typeof v === 'number' ? v : Number(v);
}

type Long = { toNumber(): number };
