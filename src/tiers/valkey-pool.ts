/**
 * The Valkey connections of one tier, and whether Valkey is reachable.
 *
 * Several glide clients, used round-robin (valkey-commands.ts turns a
 * request into glide calls). A lone GET/GETRANGE/SET goes out as a plain command under the client's timeout, sized for the largest value
 * (glide's 250 ms default is too short for MB values); several commands go
 * out as one non-atomic batch with its own timeout: base + (bytes queued on
 * that client + its own bytes) / rate. Neither exceeds requestCeilingMs()
 * (valkey-options.ts), nor does the PING that checks a timed-out server, so
 * a hung server costs a caller at most hungServerBoundMs().
 *
 *   connecting ──ok──▶ up ──connection error──▶ down ──backoff, retry──▶ up
 *        └──fail──▶ down                          (clients closed and recreated)
 *
 * While not up, run() rejects at once with ValkeyUnavailableError: callers turn
 * that into a skipped put or a miss. Auth failures become ValkeyAuthError
 * (redacted URL); the loop keeps retrying at the slowest pace.
 *
 * Clients replaced after an outage are retired, not closed, while they
 * still hold requests: closing a glide client rejects its promises at once,
 * but a command it holds for its own reconnect is still sent when that
 * reconnect succeeds. An invalidate's DEL, reported failed, then deleted
 * the manifests a later store wrote (test/tiers/valkey-pool.test.ts). A
 * retired client's requests settle by their own timeout, and a caller
 * never sees a command settle before the server could still run it.
 */

import {
  Batch,
  ClusterBatch,
  Decoder,
  GlideClient,
  GlideClusterClient,
  Logger,
  RequestError,
} from '@valkey/valkey-glide';
import { errorMessage, KvtierError, ValkeyAuthError, ValkeyUnavailableError } from '../errors.js';
import { batchOf, execBatch, scanAll, isAuthMessage, isCertificateMessage, isConnectionError, isTimeoutError, singleCommand, type Client, type ValkeyCommand, type ValkeyReply } from './valkey-commands.js';
import { requestCeilingMs } from './valkey-options.js';
import type { ValkeyEndpoint } from './valkey-url.js';

export type { ValkeyCommand, ValkeyReply } from './valkey-commands.js';

export type PoolState = 'connecting' | 'up' | 'down' | 'closed';
export type LogFn = (level: 'info' | 'warn' | 'error', message: string) => void;

export interface ValkeyPoolOptions {
  endpoint: ValkeyEndpoint;
  connections: number;
  requestTimeoutMs: number;
  /** Slowest transfer rate a request is given time for, bytes per second. */
  minBytesPerSec: number;
  connectTimeoutMs: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  /** Bulk requests in flight per connection; more wait in FIFO order. */
  bulkPerConnection: number;
  /** The largest value one command carries (a segment and its header). */
  maxValueBytes: number;
  tlsInsecure: boolean;
  tlsRootCertificates?: string | Buffer;
  log: LogFn;
  onState: (state: PoolState, error?: KvtierError) => void;
}

interface Slot {
  client: Client;
  queuedBytes: number;
  /** Requests of at least BULK_BYTES in flight on this connection. */
  bulk: number;
  /** Requests of any size glide has not settled yet. */
  inFlight: number;
  /** Replaced after an outage: closed once inFlight is 0. */
  retired: boolean;
}

/**
 * Requests this large wait for a connection with fewer than
 * bulkPerConnection of them in flight, rather than pipelining behind each
 * other: Valkey reads several MiB-sized arguments queued on one connection
 * far more slowly than one at a time (docs/valkey.md, "the cliff").
 */
const BULK_BYTES = 64 * 1024;

let glideLogSet = false;

export class ValkeyPool {
  #o: ValkeyPoolOptions;
  #slots: Slot[] = [];
  #next = 0;
  #waiters: { resolve: (slot: Slot) => void; reject: (e: unknown) => void }[] = [];
  #state: PoolState = 'connecting';
  #lastError: KvtierError | undefined;
  #generation = 0;
  #everUp = false;
  #reconnects = 0;
  #wake: (() => void) | undefined;
  #firstAttempt: Promise<void>;
  #loop: Promise<void> | undefined;
  /** requestCeilingMs of these options: the limit of every request. */
  #ceilingMs: number;
  /** Retired slots still holding requests; close() waits for them. */
  #retiring = new Set<Slot>();
  #retiredIdle: (() => void)[] = [];

  constructor(options: ValkeyPoolOptions) {
    this.#o = options;
    this.#ceilingMs = requestCeilingMs(options);
    if (!glideLogSet) {
      // glide logs every failed reconnect at ERROR; the tier reports state itself.
      Logger.setLoggerConfig('off');
      glideLogSet = true;
    }
    let settle!: () => void;
    this.#firstAttempt = new Promise<void>((r) => (settle = r));
    this.#loop = this.#connectLoop(settle);
  }

  #isClosed(): boolean {
    return this.#state === 'closed';
  }

  get state(): PoolState {
    return this.#state;
  }

  get lastError(): KvtierError | undefined {
    return this.#lastError;
  }

  get reconnects(): number {
    return this.#reconnects;
  }

  /** Resolves after the first connection attempt succeeded or failed. */
  firstAttempt(): Promise<void> {
    return this.#firstAttempt;
  }

  async #createClients(): Promise<Client[]> {
    const ep = this.#o.endpoint;
    const base = {
      addresses: ep.addresses,
      useTLS: ep.tls,
      // Plain commands (see #single) have no timeout of their own: give each
      // the time for the largest value plus what may be queued ahead of it
      // on its connection (bulkPerConnection values of that size).
      requestTimeout: this.#ceilingMs,
      defaultDecoder: Decoder.Bytes,
      clientName: 'kvtier',
      // glide reconnects a dropped connection by itself, and when it does the
      // pool never sees the outage: cap its backoff near 400 ms so requests do
      // not wait on connections still between retries. `kvtier bench
      // valkey-restart`, 1 s outage, first store after the restart with no
      // traffic during the outage: 950-990 ms with a ~1 s cap, 118-365 ms now.
      connectionBackoff: { numberOfRetries: 3, factor: 50, exponentBase: 2, jitterPercent: 20 },
      advancedConfiguration: {
        connectionTimeout: this.#o.connectTimeoutMs,
        ...(ep.tls && (this.#o.tlsInsecure || this.#o.tlsRootCertificates)
          ? {
              tlsAdvancedConfiguration: {
                ...(this.#o.tlsInsecure ? { insecure: true } : {}),
                ...(this.#o.tlsRootCertificates ? { rootCertificates: this.#o.tlsRootCertificates } : {}),
              },
            }
          : {}),
      },
      ...(ep.password !== undefined
        ? { credentials: ep.username !== undefined ? { username: ep.username, password: ep.password } : { password: ep.password } }
        : {}),
    };
    const made = await Promise.allSettled(
      Array.from({ length: this.#o.connections }, () =>
        ep.mode === 'cluster'
          ? GlideClusterClient.createClient(base)
          : GlideClient.createClient({ ...base, databaseId: ep.databaseId }),
      ),
    );
    const ok = made.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = made.find((r) => r.status === 'rejected');
    if (failed) {
      for (const c of ok) c.close();
      throw failed.reason;
    }
    return ok;
  }

  #setState(state: PoolState, error?: KvtierError): void {
    if (this.#state === state || this.#state === 'closed') return;
    this.#state = state;
    this.#o.onState(state, error);
  }

  async #connectLoop(settleFirst: () => void): Promise<void> {
    let attempt = 0;
    while (this.#state !== 'closed') {
      try {
        const clients = await this.#createClients();
        if (this.#isClosed()) {
          for (const c of clients) c.close();
          break;
        }
        this.#slots = clients.map((client) => ({ client, queuedBytes: 0, bulk: 0, inFlight: 0, retired: false }));
        this.#generation++;
        this.#lastError = undefined;
        if (this.#everUp) this.#reconnects++;
        this.#everUp = true;
        this.#o.log('info', `valkey ${this.#o.endpoint.redacted}: connected (${clients.length} connections)`);
        this.#setState('up');
        settleFirst();
        return;
      } catch (e) {
        const msg = errorMessage(e);
        const auth = isAuthMessage(msg);
        const hint = this.#o.endpoint.tls && isCertificateMessage(msg)
          ? ' (TLS: the server certificate is not trusted; valkey_tls_ca_file names the CA that signed it)'
          : '';
        const err = auth
          ? new ValkeyAuthError(`valkey ${this.#o.endpoint.redacted}: authentication failed: ${msg.trim()}`, { cause: e })
          : new ValkeyUnavailableError(`valkey ${this.#o.endpoint.redacted} unreachable: ${msg.trim()}${hint}`, { cause: e });
        if (attempt === 0 || auth !== (this.#lastError instanceof ValkeyAuthError)) {
          this.#o.log(auth ? 'error' : 'warn', `${err.message}; retrying in the background`);
        }
        this.#lastError = err;
        this.#setState('down', err);
        settleFirst();
      }
      const delay = this.#lastError instanceof ValkeyAuthError
        ? this.#o.reconnectMaxMs
        : Math.min(this.#o.reconnectMaxMs, this.#o.reconnectMinMs * 2 ** Math.min(attempt, 20));
      attempt++;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay * (0.75 + Math.random() * 0.5));
        t.unref();
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.#wake = undefined;
    }
    settleFirst();
  }

  /** Called when a request saw a broken connection: drop the clients, reconnect. */
  markDown(cause: unknown): void {
    if (this.#state !== 'up') return;
    const err = new ValkeyUnavailableError(`valkey ${this.#o.endpoint.redacted}: connection lost: ${errorMessage(cause).trim()}`, { cause });
    this.#o.log('warn', `${err.message}; reconnecting`);
    this.#lastError = err;
    const old = this.#slots;
    this.#slots = [];
    this.#rejectWaiters(err);
    this.#setState('down', err);
    this.#retire(old);
    this.#loop = this.#connectLoop(() => undefined);
  }

  /** Closes each slot now when idle, else when its last request settles. */
  #retire(slots: readonly Slot[]): void {
    for (const s of slots) {
      s.retired = true;
      if (s.inFlight === 0) s.client.close();
      else this.#retiring.add(s);
    }
  }

  /** A request just sent on `slot`, counted so that a retired client is closed only once glide settled it. */
  async #track<T>(slot: Slot, request: Promise<T>): Promise<T> {
    slot.inFlight++;
    try {
      return await request;
    } finally {
      if (--slot.inFlight === 0 && slot.retired) {
        slot.client.close();
        this.#retiring.delete(slot);
        if (this.#retiring.size === 0) for (const w of this.#retiredIdle.splice(0)) w();
      }
    }
  }

  /**
   * A request timed out: if a PING fails too, the connection is down. The
   * PING waits behind what is queued on its connection, at most
   * requestCeilingMs, never a time sized for everything queued.
   */
  async probe(): Promise<void> {
    const slot = this.#slots[0];
    if (!slot || this.#state !== 'up') return;
    const gen = this.#generation;
    try {
      const b = slot.client instanceof GlideClusterClient ? new ClusterBatch(false) : new Batch(false);
      b.ping();
      await this.#track(slot, execBatch(slot.client, b, this.#ceilingMs));
    } catch (e) {
      if (gen === this.#generation) this.markDown(e);
    }
  }

  /**
   * CLUSTER SLOTS from one node, strings decoded: the slot map the native
   * data path routes by. Rejects when not up or not a cluster endpoint.
   */
  async clusterSlots(): Promise<unknown> {
    const slot = this.#slots[0];
    const client = slot?.client;
    if (this.#state !== 'up' || !(client instanceof GlideClusterClient)) {
      throw this.#lastError ?? new ValkeyUnavailableError(`valkey ${this.#o.endpoint.redacted}: no cluster connection for CLUSTER SLOTS`);
    }
    return this.#track(slot, client.customCommand(['CLUSTER', 'SLOTS'], { route: 'randomNode', decoder: Decoder.String }));
  }

  /**
   * Every key matching a glob, by SCAN (each master in a cluster): for
   * namespace-wide deletes, never on a request's hot path.
   */
  async scanKeys(match: string): Promise<string[]> {
    const slot = this.#slots[0];
    if (this.#state !== 'up' || slot === undefined) {
      throw this.#lastError ?? new ValkeyUnavailableError(`valkey ${this.#o.endpoint.redacted} is not connected`);
    }
    return this.#track(slot, scanAll(slot.client, match));
  }

  /** A batch's timeout: its bytes and those queued ahead of it, at most the ceiling. */
  #timeoutFor(slot: Slot, bytes: number): number {
    const ms = this.#o.requestTimeoutMs + ((slot.queuedBytes + bytes) * 1000) / this.#o.minBytesPerSec;
    return Math.ceil(Math.min(ms, this.#ceilingMs));
  }

  /**
   * Sends commands on the next connection: one GET/GETRANGE/SET as a plain
   * command, several as one pipeline. Per-command errors come back in the
   * array (RequestError); a broken connection rejects and marks the pool down.
   */
  async run(commands: readonly ValkeyCommand[], bytes = 0): Promise<ValkeyReply[]> {
    if (this.#state !== 'up' || this.#slots.length === 0) {
      throw this.#lastError ?? new ValkeyUnavailableError(`valkey ${this.#o.endpoint.redacted} is not connected`);
    }
    const bulk = bytes >= BULK_BYTES;
    const slot = bulk ? await this.#acquireBulk() : this.#slots[this.#next++ % this.#slots.length];
    slot.queuedBytes += bytes;
    const gen = this.#generation;
    try {
      const single = commands.length === 1 ? singleCommand(slot.client, commands[0]) : undefined;
      if (single) {
        try {
          return [await this.#track(slot, single)];
        } catch (e) {
          // A server error reply belongs to the command, as in a pipeline.
          if (e instanceof RequestError && !isConnectionError(e) && !isTimeoutError(e)) return [e];
          throw e;
        }
      }
      const timeoutMs = this.#timeoutFor(slot, bytes);
      const out = await this.#track(slot, execBatch(slot.client, batchOf(slot.client, commands), timeoutMs));
      if (!out || out.length !== commands.length) {
        throw new ValkeyUnavailableError(`valkey ${this.#o.endpoint.redacted}: pipeline of ${commands.length} gave ${out?.length ?? 'no'} replies`);
      }
      for (const r of out) {
        if (isConnectionError(r) && gen === this.#generation) this.markDown(r);
      }
      return out;
    } catch (e) {
      if (gen === this.#generation) {
        if (isConnectionError(e)) this.markDown(e);
        else if (isTimeoutError(e)) void this.probe();
      }
      throw e;
    } finally {
      slot.queuedBytes -= bytes;
      if (bulk) this.#releaseBulk(slot);
    }
  }

  #rejectWaiters(err: unknown): void {
    for (const w of this.#waiters.splice(0)) w.reject(err);
  }

  /** A connection for a bulk request: the least loaded with room, or the next to free up. */
  #acquireBulk(): Slot | Promise<Slot> {
    let best: Slot | undefined;
    for (let i = 0; i < this.#slots.length; i++) {
      const s = this.#slots[(this.#next + i) % this.#slots.length];
      if (s.bulk < this.#o.bulkPerConnection && (!best || s.bulk < best.bulk)) best = s;
    }
    this.#next++;
    if (best) {
      best.bulk++;
      return best;
    }
    return new Promise<Slot>((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  #releaseBulk(slot: Slot): void {
    const w = this.#slots.includes(slot) ? this.#waiters.shift() : undefined;
    if (w) w.resolve(slot);
    else slot.bulk--;
  }

  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#rejectWaiters(new ValkeyUnavailableError('valkey tier closed'));
    this.#wake?.();
    const old = this.#slots;
    this.#slots = [];
    this.#retire(old);
    await this.#loop;
    // Each request left ends by its own timeout, within requestCeilingMs.
    if (this.#retiring.size > 0) await new Promise<void>((resolve) => this.#retiredIdle.push(resolve));
  }
}

export { RequestError };
