/**
 * TypeScript client for kvtierd (used by the CLI, tests and benches).
 *
 * Requests are pipelined: each gets an id and its own timeout; responses are
 * matched by id in any order. Store is the one request with two responses
 * (StoreCopied, then StoreCommitted), so its pending slot stays open for the
 * second one. An Error frame rejects with a KvtierError carrying the
 * daemon's code; a closed socket rejects everything still pending.
 * Timeouts share one timer (armed for the earliest deadline, re-armed when it
 * fires) instead of a setTimeout/clearTimeout pair per request: a request
 * costs a deadline number, and the round trip is the socket's.
 */
import { createConnection, type Socket } from 'node:net';
import { ConnectionClosedError, ErrorCode, KvtierError, TimeoutError } from '../errors.js';
import type { NamespaceFingerprint } from '../chunking/namespace.js';
import { FrameDecoder } from './framing.js';
import { TurnCork } from './turn-cork.js';
import { PROTOCOL_VERSION, decodeEnvelope, emptyBodyFrame, encodeFrame, lookupFrameParts, type Envelope, type EnvelopeInit } from './messages.js';
import type { kvtier } from './gen/kvtier.js';

export interface ClientOptions {
  path: string;
  fingerprint?: Partial<NamespaceFingerprint>;
  clientKind?: string;
  timeoutMs?: number;
  /** Hello.lookup_ranks: the ranks this connection's Lookups answer for (a scheduler of a TP/PP engine). */
  lookupRanks?: Array<{ tpRank: number; ppRank: number }>;
}

type Body = Omit<EnvelopeInit, 'id'>;

interface Settle {
  resolve(env: Envelope): void;
  reject(e: Error): void;
}

interface Pending {
  first: Settle;
  /** Store: resolves on StoreCommitted after the first response resolved. */
  second: Settle | undefined;
  /** performance.now() past which the request fails with TimeoutError. */
  deadline: number;
  what: string;
  timeoutMs: number;
}

export interface StoreHandle {
  copied: kvtier.v1.StoreCopied;
  committed: Promise<kvtier.v1.StoreCommitted>;
}

export class KvtierClient {
  readonly #socket: Socket;
  readonly #cork: TurnCork;
  readonly #pending = new Map<number, Pending>();
  readonly #decoder = new FrameDecoder(0x7fffffff);
  readonly #timeoutMs: number;
  #nextId = 1;
  #closedError: Error | null = null;
  /** The one timeout timer, and the deadline it is armed for. */
  #timer: NodeJS.Timeout | null = null;
  #timerAt = Infinity;
  hello: kvtier.v1.HelloOk | null = null;

  private constructor(socket: Socket, timeoutMs: number) {
    this.#socket = socket;
    this.#cork = new TurnCork(socket);
    this.#timeoutMs = timeoutMs;
    socket.on('data', (d: Buffer) => this.#onData(d));
    socket.on('close', () => this.#failAll(new ConnectionClosedError('connection to kvtierd closed')));
    socket.on('error', (e) => this.#failAll(new ConnectionClosedError(`connection to kvtierd failed: ${e.message}`)));
  }

  static async connect(opts: ClientOptions): Promise<KvtierClient> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = createConnection(opts.path);
      const timer = setTimeout(() => {
        s.destroy();
        reject(new TimeoutError(`connect to ${opts.path}`, timeoutMs));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once('error', (e) => {
        clearTimeout(timer);
        reject(new ConnectionClosedError(`cannot connect to kvtierd at ${opts.path}: ${e.message}`));
      });
    });
    const client = new KvtierClient(socket, timeoutMs);
    const fp = opts.fingerprint ?? {};
    const env = await client.request({
      hello: {
        protocolVersion: PROTOCOL_VERSION,
        clientKind: opts.clientKind ?? 'ts-client',
        fingerprint: {
          model: fp.model ?? '', dtype: fp.dtype ?? '', kvLayout: fp.kvLayout ?? '', chunkSize: fp.chunkSize ?? 0,
          blockSize: fp.blockSize ?? 0, tpRank: fp.tpRank ?? 0, tpSize: fp.tpSize ?? 0, ppRank: fp.ppRank ?? 0,
          ppSize: fp.ppSize ?? 0, mla: fp.mla ?? false, cacheSalt: fp.cacheSalt ?? '',
        },
        lookupRanks: opts.lookupRanks ?? [],
      },
    }).catch((e: unknown) => {
      socket.destroy();
      throw e;
    });
    client.hello = env.helloOk as kvtier.v1.HelloOk;
    return client;
  }

  /** One request, one response. Decoded sub-messages are instances of their generated class. */
  request(body: Body, timeoutMs = this.#timeoutMs): Promise<Envelope> {
    return new Promise((resolve, reject) => this.#start(Object.keys(body)[0] ?? 'request', (id) => encodeFrame({ id, ...body }), timeoutMs, { resolve, reject }));
  }

  /** Writes raw bytes: for fault tests that need malformed frames. */
  writeRaw(bytes: Buffer): void {
    this.#socket.write(bytes);
  }

  async ping(): Promise<void> {
    await new Promise<Envelope>((resolve, reject) => this.#start('ping', (id) => emptyBodyFrame(id, 'ping'), this.#timeoutMs, { resolve, reject }));
  }

  /** `address.tokens` is sent without a copy, at the end of this turn (writes are corked): leave its bytes unchanged until then. */
  async lookup(address: kvtier.v1.IChunkAddress, opts: { leaseTtlMs?: number; noLease?: boolean } = {}): Promise<kvtier.v1.LookupOk> {
    const ttl = opts.leaseTtlMs ?? 0;
    const noLease = opts.noLease ?? false;
    const tokens = address.tokens;
    if (tokens != null && tokens.byteLength > 0 && (address.keys == null || address.keys.length === 0)) {
      // The scheduler's hot call: the prompt's token bytes go out without a copy.
      const env = await new Promise<Envelope>((resolve, reject) =>
        this.#start('lookup', (id) => lookupFrameParts(id, tokens, ttl, noLease, address.seed), this.#timeoutMs, { resolve, reject }));
      return env.lookupOk as kvtier.v1.LookupOk;
    }
    return (await this.request({ lookup: { address, leaseTtlMs: ttl, noLease } })).lookupOk as kvtier.v1.LookupOk;
  }

  async releaseLease(leaseId: number): Promise<void> {
    await this.request({ releaseLease: { leaseId } });
  }

  async put(key: Uint8Array, value: Uint8Array): Promise<void> {
    await this.request({ put: { key, value } });
  }

  async get(key: Uint8Array): Promise<Buffer | null> {
    const r = (await this.request({ get: { key } })).getOk as kvtier.v1.GetOk;
    return r.found ? Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength) : null;
  }

  async exists(keys: Uint8Array[]): Promise<kvtier.v1.ExistsOk> {
    return (await this.request({ exists: { keys } })).existsOk as kvtier.v1.ExistsOk;
  }

  store(store: kvtier.v1.IStore, timeoutMs = this.#timeoutMs): Promise<StoreHandle> {
    return new Promise((resolve, reject) => {
      let commit!: { resolve(env: Envelope): void; reject(e: Error): void };
      const committed = new Promise<kvtier.v1.StoreCommitted>((res, rej) => {
        commit = { resolve: (env) => res(env.storeCommitted as kvtier.v1.StoreCommitted), reject: rej };
      });
      // Nobody may await `committed`; a closed socket must not become an unhandled rejection.
      committed.catch(() => {});
      this.#start('store', (id) => encodeFrame({ id, store }), timeoutMs, { resolve: (env) => resolve({ copied: env.storeCopied as kvtier.v1.StoreCopied, committed }), reject }, commit);
    });
  }

  async retrieve(req: kvtier.v1.IRetrieve): Promise<kvtier.v1.RetrieveDone> {
    return (await this.request({ retrieve: req })).retrieveDone as kvtier.v1.RetrieveDone;
  }

  async invalidate(address: kvtier.v1.IChunkAddress | null): Promise<number> {
    return (await this.request({ invalidate: { address } })).invalidateOk?.removedChunks ?? 0;
  }

  async stats(): Promise<Record<string, unknown>> {
    return JSON.parse((await this.request({ stats: {} })).statsOk?.json ?? "{}") as Record<string, unknown>;
  }

  /** Admin: namespaces with chunk counts and bytes per tier. */
  async listNamespaces(req: kvtier.v1.IListNamespaces = {}): Promise<kvtier.v1.ListNamespacesOk> {
    return (await this.request({ listNamespaces: req })).listNamespacesOk as kvtier.v1.ListNamespacesOk;
  }

  /** Admin: where chunks live (by hash, or every chunk of tokens in this connection's namespace). */
  async inspect(req: kvtier.v1.IInspect): Promise<kvtier.v1.InspectOk> {
    return (await this.request({ inspect: req })).inspectOk as kvtier.v1.InspectOk;
  }

  /** Admin: removes a namespace's (or every namespace's) chunks from a tier or all. */
  async clear(req: kvtier.v1.IClear = {}): Promise<kvtier.v1.ClearOk> {
    return (await this.request({ clear: req })).clearOk as kvtier.v1.ClearOk;
  }

  /** Admin: keeps a prefix from eviction (unpin: lets it go). */
  async pin(address: kvtier.v1.IChunkAddress, unpin = false): Promise<kvtier.v1.PinOk> {
    return (await this.request({ pin: { address, unpin } })).pinOk as kvtier.v1.PinOk;
  }

  async registerKv(req: kvtier.v1.IRegisterKv): Promise<kvtier.v1.RegisterKvOk> {
    return (await this.request({ registerKv: req })).registerKvOk as kvtier.v1.RegisterKvOk;
  }

  async unregister(): Promise<void> {
    await this.request({ unregister: {} });
  }

  get pendingCount(): number {
    return this.#pending.size;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.#socket.destroyed) return resolve();
      this.#socket.once('close', () => resolve());
      this.#socket.end();
    });
  }

  /** Ends the connection at once, as a killed client would: what was already sent (this turn's corked writes too) goes out first. */
  destroy(): void {
    this.#cork.flush();
    this.#socket.destroy();
  }

  #start(
    what: string,
    encode: (id: number) => Buffer | Buffer[],
    timeoutMs: number,
    first: Settle,
    second?: Settle,
  ): void {
    if (this.#closedError !== null) {
      first.reject(this.#closedError);
      return;
    }
    const id = this.#nextId++;
    const deadline = performance.now() + timeoutMs;
    this.#pending.set(id, { first, second, deadline, what, timeoutMs });
    if (deadline < this.#timerAt) this.#arm(deadline);
    const frame = encode(id);
    // Requests made together (a lease released per rank) leave in one writev.
    this.#cork.hold();
    if (Buffer.isBuffer(frame)) this.#socket.write(frame);
    else for (const part of frame) this.#socket.write(part);
  }

  /** (Re)arms the timeout timer for `at`. Unref'd: the open socket is what keeps a process alive. */
  #arm(at: number): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#expire(), Math.max(0, Math.ceil(at - performance.now())));
    this.#timer.unref();
  }

  /** Fails every request past its deadline; re-arms for the earliest one left. */
  #expire(): void {
    this.#timer = null;
    this.#timerAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (const [id, p] of this.#pending) {
      if (p.deadline <= now) {
        this.#pending.delete(id);
        const e = new TimeoutError(`request ${p.what} (id ${id})`, p.timeoutMs);
        p.first.reject(e);
        p.second?.reject(e);
      } else if (p.deadline < next) {
        next = p.deadline;
      }
    }
    if (next !== Infinity) this.#arm(next);
  }

  #onData(data: Buffer): void {
    try {
      this.#decoder.push(data, this.#frameHandler);
    } catch (e) {
      this.#failAll(e instanceof Error ? e : new Error(String(e)));
      this.#socket.destroy();
    }
  }

  readonly #frameHandler = (frame: Buffer): void => this.#onFrame(frame);

  #onFrame(frame: Buffer): void {
    const env = decodeEnvelope(frame);
    const p = this.#pending.get(env.id);
    if (p === undefined) return;
    if (env.body === 'error') {
      this.#pending.delete(env.id);
      const e = new KvtierError((env.error?.code ?? ErrorCode.KVT_INTERNAL) as ErrorCode, env.error?.message ?? "");
      p.first.reject(e);
      p.second?.reject(e);
    } else if (env.body === 'storeCopied' && p.second !== undefined) {
      p.first.resolve(env);
    } else if (env.body === 'storeCommitted' && p.second !== undefined) {
      this.#pending.delete(env.id);
      p.second.resolve(env);
    } else {
      this.#pending.delete(env.id);
      p.first.resolve(env);
    }
  }

  #failAll(e: Error): void {
    if (this.#closedError === null) this.#closedError = e;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#timerAt = Infinity;
    for (const [id, p] of this.#pending) {
      p.first.reject(e);
      p.second?.reject(e);
      this.#pending.delete(id);
    }
  }
}
