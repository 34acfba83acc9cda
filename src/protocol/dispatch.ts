/**
 * Every request of a connection passes here: decoded envelope -> domain call
 * (ChunkManager, the KV registrar) -> reply, and each Lookup, Store and
 * Retrieve is reported once to a RequestObserver (src/metrics implements
 * it). Nothing else times or counts requests, and nothing wraps the manager.
 *
 * dispatch() answers Ping, Hello, Stats and ReleaseLease synchronously (the
 * socket's round trip: no promise in between) and returns a Promise for the
 * rest. It throws or rejects with domain errors; connection.ts turns those
 * into Error frames. A Lookup reads its token bytes before its first await,
 * which is what lets connection.ts serve it from the frame's loaned bytes
 * (framing.ts) instead of a copy.
 */
import { BadRequestError, ErrorCode, KvtierError, NamespaceMismatchError, NotHelloError, NotRegisteredError, ProtocolVersionError, UnknownMessageError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Namespace } from '../chunking/namespace.js';
import type { BlockCopier, ChunkManager } from '../manager/chunk-manager.js';
import type { KvLayoutSpec } from '../../native/layout-plan.js';
import * as admin from './admin.js';
import { address, addressOrAll, asBuffer, lookupRanksOf, namespaceOf, num } from './from-wire.js';
import { layoutFromWire } from './layout-from-wire.js';
import { ACK, PONG, PROTOCOL_VERSION, type Envelope, type EnvelopeInit } from './messages.js';
import type { PeerCredentials } from './peer.js';
import { u32View } from './u32.js';
import type { kvtier } from './gen/kvtier.js';

/** A worker's registered KV memory, as the native addon opens it. */
export interface RegisteredKv extends BlockCopier {
  readonly backend: string;
  close(): Promise<void>;
}

/**
 * Maps a worker's KV memory. `peer` is the connecting process as the kernel
 * saw it (null when it could not be read): shm files must be owned by its uid.
 */
export type KvRegistrar = (layout: KvLayoutSpec, peer: PeerCredentials | null) => Promise<RegisteredKv>;

export type TransferForm = 'inline' | 'blocks';
export type ObservedOp = 'lookup' | 'store' | 'retrieve';

/**
 * What the dispatcher reports, once per request. Plain numbers so that an
 * observation allocates nothing; seconds are the manager call's own time
 * (for Store: until StoreCopied).
 */
export interface RequestObserver {
  lookupDone(seconds: number, hitChunks: number): void;
  storeCopied(form: TransferForm, seconds: number, chunks: number, bytes: number): void;
  retrieveDone(form: TransferForm, seconds: number, chunks: number, bytes: number): void;
  /** A Lookup, Store (or Put) or Retrieve that ended in an error frame. */
  failed(op: ObservedOp): void;
  /** A request the client kept away from kvtier (Bypass), by reason. */
  bypassed(reason: string): void;
  kvRegistered(): void;
  kvReleased(): void;
}

/** What every connection's dispatcher shares. */
export interface DispatchContext {
  manager: ChunkManager;
  chunkSize: number;
  maxFrameBytes: number;
  maxChunkBytes: number;
  saveUnfullChunk: boolean;
  serverVersion: string;
  registrar: KvRegistrar | null;
  observer: RequestObserver;
  statsJson(): string;
}

export interface DispatcherInit {
  /** The connection's id: leases are owned by it and go when it closes. */
  owner: number;
  peer: PeerCredentials | null;
  log: Logger;
  /** Writes a frame now: Store and inline Retrieve answer with their own frames. */
  send(msg: EnvelopeInit): void;
}

/** A request's answer without its id; null: the handler sent its own frames. PONG and ACK are shared objects (messages.ts). */
export type Reply = Readonly<Omit<EnvelopeInit, 'id'>> | null;

const since = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;

export class Dispatcher {
  readonly #ctx: DispatchContext;
  readonly #init: DispatcherInit;
  readonly #obs: RequestObserver;
  #ns: Namespace | null = null;
  /** Hello.lookup_ranks: the namespaces a Lookup answers for (null: the connection's own). */
  #ranks: Namespace[] | null = null;
  /** Where this connection's leases may live: its namespace and its lookup ranks'. */
  #leaseSpaces: Namespace[] = [];
  #kv: RegisteredKv | null = null;

  constructor(ctx: DispatchContext, init: DispatcherInit) {
    this.#ctx = ctx;
    this.#init = init;
    this.#obs = ctx.observer;
  }

  /** Whether this connection has KV memory registered (it is then never closed as idle). */
  get holdsKv(): boolean {
    return this.#kv !== null;
  }

  dispatch(env: Envelope): Reply | Promise<Reply> {
    const m = this.#ctx.manager;
    switch (env.body) {
      case 'hello':
        return { helloOk: this.#hello(env.hello!) };
      case 'ping':
        return PONG;
      case 'stats':
        return { statsOk: { json: this.#ctx.statsJson() } };
      case 'releaseLease':
        this.#namespace();
        m.releaseLease(this.#leaseSpaces, num(env.releaseLease!.leaseId));
        return ACK;
      case 'lookup':
        return this.#lookup(this.#ranks ?? this.#namespace(), env.lookup!);
      case 'store':
        return this.#store(this.#namespace(), env.id, env.store!);
      case 'retrieve':
        return this.#retrieve(this.#namespace(), env.id, env.retrieve!);
      case 'put':
        return this.#put(this.#namespace(), env.put!);
      case 'get':
        return this.#get(this.#namespace(), env.get!);
      case 'exists':
        return this.#exists(this.#namespace(), env.exists!);
      case 'invalidate':
        return this.#invalidate(this.#namespace(), env.invalidate!);
      // Admin (the kvtier CLI): listing and clearing name namespaces by id, but wait for Hello too.
      case 'listNamespaces':
        this.#namespace();
        return admin.listNamespaces(m, env.listNamespaces!);
      case 'inspect':
        return admin.inspect(m, this.#namespace(), env.inspect!);
      case 'clear':
        this.#namespace();
        return admin.clear(m, env.clear!);
      case 'pin':
        return admin.pin(m, this.#namespace(), env.pin!);
      case 'bypass':
        this.#namespace();
        this.#obs.bypassed(bypassReason(env.bypass!.reason));
        return ACK;
      // These two need no namespace, but like every request they wait for Hello.
      case 'registerKv':
        this.#namespace();
        return this.#register(env.registerKv!);
      case 'unregister':
        this.#namespace();
        return this.unregister().then(() => ACK);
      case undefined:
        throw new UnknownMessageError('envelope has no known body (a newer client, or garbage)');
      default:
        throw new UnknownMessageError(`${env.body} is a response, not a request`);
    }
  }

  /** Releases every lease this connection holds; returns how many. */
  releaseLeases(): number {
    return this.#ctx.manager.releaseOwner(this.#init.owner);
  }

  async unregister(): Promise<void> {
    const kv = this.#kv;
    this.#kv = null;
    if (kv === null) return;
    this.#obs.kvReleased();
    await kv.close();
  }

  #namespace(): Namespace {
    if (this.#ns === null) throw new NotHelloError();
    return this.#ns;
  }

  #hello(req: kvtier.v1.IHello): kvtier.v1.IHelloOk {
    const ctx = this.#ctx;
    if (req.protocolVersion !== PROTOCOL_VERSION) throw new ProtocolVersionError(req.protocolVersion ?? 0, PROTOCOL_VERSION);
    const fp = req.fingerprint ?? {};
    const chunkSize = fp.chunkSize || ctx.chunkSize;
    if (chunkSize !== ctx.chunkSize) {
      throw new NamespaceMismatchError(`client chunk_size ${chunkSize} differs from the daemon's ${ctx.chunkSize}`);
    }
    if (this.#ns !== null) throw new BadRequestError('Hello was already sent on this connection');
    const ns = namespaceOf(fp, chunkSize);
    const ranks = lookupRanksOf(ns, req.lookupRanks);
    this.#ns = ns;
    this.#ranks = ranks;
    this.#leaseSpaces = ranks === null ? [ns] : [ns, ...ranks];
    this.#init.log.debug('hello', { namespace: ns.id, client: req.clientKind ?? '', lookupRanks: ranks?.length ?? 0 });
    return {
      protocolVersion: PROTOCOL_VERSION, namespaceId: ns.id, chunkSize, maxFrameBytes: ctx.maxFrameBytes,
      maxChunkBytes: ctx.maxChunkBytes, saveUnfullChunk: ctx.saveUnfullChunk, serverVersion: ctx.serverVersion,
      addressSeed: true, rankNamespaceIds: ranks === null ? [] : ranks.map((r) => r.id),
    };
  }

  async #lookup(ns: Namespace | Namespace[], req: kvtier.v1.ILookup): Promise<Reply> {
    const t0 = process.hrtime.bigint();
    try {
      const r = await this.#ctx.manager.lookup(ns, address(req.address), { owner: this.#init.owner, ttlMs: req.leaseTtlMs || undefined, noLease: req.noLease === true });
      this.#obs.lookupDone(since(t0), r.hitChunks);
      const leaseIds = this.#ranks === null ? undefined : r.leaseIds;
      return { lookupOk: { hitTokens: r.hitTokens, hitChunks: r.hitChunks, hostChunks: r.hostChunks, diskChunks: r.diskChunks, valkeyChunks: r.remoteChunks, leaseId: r.leaseId, leaseIds } };
    } catch (e) {
      this.#obs.failed('lookup');
      throw e;
    }
  }

  /** Answers twice: StoreCopied once the bytes are in host slabs, StoreCommitted after write-behind. */
  async #store(ns: Namespace, id: number, req: kvtier.v1.IStore): Promise<null> {
    const m = this.#ctx.manager;
    const t0 = process.hrtime.bigint();
    let r;
    try {
      const addr = address(req.address);
      const skip = req.skipChunks ?? 0;
      if (req.blockIds != null && req.blockIds.length > 0) {
        const kv = this.#kv;
        if (kv === null) throw new NotRegisteredError();
        r = await m.store(ns, addr, { kind: 'blocks', blockIds: u32View(req.blockIds, 'block_ids'), copier: kv }, skip);
        this.#obs.storeCopied('blocks', since(t0), r.stored, r.stored * kv.chunkBytes);
      } else {
        const chunks = (req.chunks ?? []).map(asBuffer);
        let bytes = 0;
        for (const c of chunks) {
          if (c.length > this.#ctx.maxChunkBytes) throw new BadRequestError(`chunk of ${c.length} bytes exceeds the ${this.#ctx.maxChunkBytes}-byte limit`);
          bytes += c.length;
        }
        r = await m.store(ns, addr, { kind: 'inline', chunks }, skip);
        this.#obs.storeCopied('inline', since(t0), r.stored, bytes);
      }
    } catch (e) {
      this.#obs.failed('store');
      throw e;
    }
    const send = this.#init.send;
    send({ id, storeCopied: { storedChunks: r.stored, presentChunks: r.present, skippedChunks: r.skipped } });
    const c = await r.committed;
    send({ id, storeCommitted: { committedChunks: c.committed, failedChunks: c.failed } });
    return null;
  }

  async #retrieve(ns: Namespace, id: number, req: kvtier.v1.IRetrieve): Promise<Reply> {
    const m = this.#ctx.manager;
    const leaseId = num(req.leaseId);
    const first = req.firstChunk ?? 0;
    const count = req.numChunks ?? 0;
    const t0 = process.hrtime.bigint();
    try {
      if (req.blockIds != null && req.blockIds.length > 0) {
        const kv = this.#kv;
        if (kv === null) throw new NotRegisteredError();
        const r = await m.retrieveBlocks(ns, leaseId, first, count, u32View(req.blockIds, 'block_ids'), kv);
        this.#obs.retrieveDone('blocks', since(t0), r.loaded, r.loaded * kv.chunkBytes);
        const failed = Buffer.from(r.failedBlocks.buffer, r.failedBlocks.byteOffset, r.failedBlocks.byteLength);
        return { retrieveDone: { loadedChunks: r.loaded, failedChunks: r.failed, failedBlockIds: failed } };
      }
      const r = await m.retrieveInline(ns, leaseId, first, count);
      try {
        let loaded = 0;
        let bytes = 0;
        const chunks = r.chunks.map((c) => {
          if (c === null) return Buffer.alloc(0);
          loaded++;
          bytes += c.length;
          return c;
        });
        this.#obs.retrieveDone('inline', since(t0), loaded, bytes);
        // Sent while the slabs are still pinned: the frame holds its own copy afterwards.
        this.#init.send({ id, retrieveDone: { chunks, loadedChunks: loaded, failedChunks: chunks.length - loaded } });
        return null;
      } finally {
        r.done();
      }
    } catch (e) {
      this.#obs.failed('retrieve');
      throw e;
    }
  }

  /** A Put is a one-chunk inline Store under an opaque key, and is observed as one. */
  async #put(ns: Namespace, req: kvtier.v1.IPut): Promise<Reply> {
    const t0 = process.hrtime.bigint();
    try {
      if (req.key == null || req.key.length === 0) throw new BadRequestError('expected a non-empty key for Put');
      const value = asBuffer(req.value);
      const stored = await this.#ctx.manager.put(ns, req.key, value);
      this.#obs.storeCopied('inline', since(t0), stored ? 1 : 0, value.length);
      return req.wantPutOk === true ? { putOk: { stored } } : ACK;
    } catch (e) {
      this.#obs.failed('store');
      throw e;
    }
  }

  async #get(ns: Namespace, req: kvtier.v1.IGet): Promise<Reply> {
    if (req.key == null || req.key.length === 0) throw new BadRequestError('expected a non-empty key for Get');
    const value = await this.#ctx.manager.get(ns, req.key);
    return { getOk: value === null ? { found: false } : { found: true, value } };
  }

  async #exists(ns: Namespace, req: kvtier.v1.IExists): Promise<Reply> {
    const found = await this.#ctx.manager.exists(ns, req.keys ?? []);
    let prefix = 0;
    while (prefix < found.length && found[prefix]) prefix++;
    return { existsOk: { prefixFound: prefix, found } };
  }

  async #invalidate(ns: Namespace, req: kvtier.v1.IInvalidate): Promise<Reply> {
    return { invalidateOk: { removedChunks: await this.#ctx.manager.invalidate(ns, addressOrAll(req.address)) } };
  }

  async #register(req: kvtier.v1.IRegisterKv): Promise<Reply> {
    const registrar = this.#ctx.registrar;
    if (registrar === null) throw new KvtierError(ErrorCode.KVT_NATIVE, 'this daemon has no native addon loaded: block-form transfers are unavailable');
    await this.unregister();
    this.#kv = await registrar(layoutFromWire(req, this.#ctx.chunkSize), this.#init.peer);
    this.#obs.kvRegistered();
    return { registerKvOk: { chunkBytes: this.#kv.chunkBytes, backend: this.#kv.backend } };
  }
}

const BYPASS_REASON = /^[a-z0-9_]{1,48}$/;

function bypassReason(reason: string | null | undefined): string {
  if (typeof reason !== 'string' || !BYPASS_REASON.test(reason)) {
    throw new BadRequestError(`Bypass.reason must be 1-48 characters of [a-z0-9_], got ${JSON.stringify(String(reason ?? '')).slice(0, 60)}`);
  }
  return reason;
}
