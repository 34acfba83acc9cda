/**
 * One client connection's byte stream: frames in, answers out, and the
 * flow control between them. What a request means is dispatch.ts's job.
 *
 * Requests are handled concurrently and answered in completion order with
 * their own id, so a client may pipeline. Those the dispatcher answers
 * synchronously (Ping, Hello, Stats, ReleaseLease) are sent in the turn that
 * read them, with no promise in between: they are the socket's round trip
 * (a plain Ping is answered here from its bytes, before any decoding).
 * Domain errors become Error frames here and only here; a broken frame
 * stream (oversized length) is answered once and the connection closed.
 * Whatever the connection holds (leases, registered KV regions) is released
 * when it closes, however it closes.
 *
 * A connection the daemon gives up on (broken framing, idle past
 * idle_connection_timeout_ms, shutdown) is ended, given FLUSH_MS to drain
 * its last frames, then destroyed: it never stays half-open or paused
 * waiting for a FIN nobody reads.
 */
import type { Socket } from 'node:net';
import { BadFrameError, ErrorCode, errorMessage, isKvtierError } from '../errors.js';
import type { Logger } from '../log.js';
import { Dispatcher, type DispatchContext, type Reply } from './dispatch.js';
import { FrameDecoder } from './framing.js';
import { decodeEnvelope, emptyBodyFrame, encodeFrame, encodeReply, plainPingId, type Envelope, type EnvelopeInit } from './messages.js';
import type { PeerCredentials } from './peer.js';
import { TurnCork } from './turn-cork.js';

export interface ConnectionContext extends DispatchContext {
  /** Close a connection after this long without I/O, nothing in flight and no registered KV; 0: never. */
  idleTimeoutMs: number;
  logger: Logger;
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

export class Connection {
  readonly id: number;
  readonly #socket: Socket;
  readonly #ctx: ConnectionContext;
  readonly #decoder: FrameDecoder;
  readonly #log: Logger;
  readonly #closedCounts: ClosedConnectionCounts;
  readonly #dispatcher: Dispatcher;
  readonly #cork: TurnCork;
  #inFlight = 0;
  #closed = false;
  #broken = false;
  #paused = false;
  #ending = false;
  /** Everyone waiting in idle(): server.close() and #release() may both wait at once. */
  #idleWaiters: Array<() => void> = [];
  /** Resolves once the socket has closed and what the connection held is released. */
  readonly closed: Promise<void>;

  constructor(id: number, socket: Socket, ctx: ConnectionContext, init: ConnectionInit) {
    this.id = id;
    this.#socket = socket;
    this.#ctx = ctx;
    this.#closedCounts = init.closed;
    this.#log = ctx.logger.child({ conn: id });
    this.#dispatcher = new Dispatcher(ctx, { owner: id, peer: init.peer, log: this.#log, send: (msg) => this.#send(msg) });
    this.#decoder = new FrameDecoder(ctx.maxFrameBytes, { lent: true });
    this.#cork = new TurnCork(socket);
    socket.on('error', (e) => this.#log.debug('socket error', { error: e.message }));
    socket.on('drain', () => this.#flow());
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        void this.#release().finally(() => {
          init.onClose(this);
          resolve();
        });
      });
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

  /**
   * Bytes read from the socket (server.ts: its read callback, or 'data').
   * They may be the shared read buffer: used here, in this turn, and copied
   * where kept (#onFrame).
   */
  receive(data: Buffer): void {
    // Ending (shutdown, idle, a broken stream): no new request starts.
    if (this.#broken || this.#ending) return;
    try {
      this.#decoder.push(data, this.#frameHandler);
    } catch (e) {
      // The stream can no longer be split into frames: answer once, then close.
      this.#send({ id: 0, error: this.#errorBody(e) });
      this.#broken = true;
      this.#closedCounts.badFrame++;
      this.end();
    }
  }

  readonly #frameHandler = (frame: Buffer): void => this.#onFrame(frame);

  #onTimeout(): void {
    if (this.#inFlight > 0 || this.#dispatcher.holdsKv || this.#ending) return;
    this.#log.debug('closing an idle connection', { idleMs: this.#ctx.idleTimeoutMs });
    this.#closedCounts.idle++;
    this.#broken = true;
    this.end();
  }

  #onFrame(frame: Buffer): void {
    // A Ping needs no Hello and no dispatcher: answered from its bytes, with no Envelope decoded.
    const pingId = plainPingId(frame);
    if (pingId >= 0) {
      this.#write(emptyBodyFrame(pingId, 'pong'));
      return;
    }
    let env: Envelope;
    try {
      env = decodeEnvelope(frame);
      // The frame's memory is lent (framing.ts) and its Envelope's bytes
      // fields are views of it. A Lookup reads its tokens and seed only in
      // the synchronous part of dispatch() (hashing happens before the first
      // await) and is served from the loan: 512 KiB not copied per prompt.
      // Every other request may keep bytes past this turn, so it gets a copy.
      if (env.body !== 'lookup' && this.#decoder.lends(frame)) env = decodeEnvelope(Buffer.from(frame));
    } catch (e) {
      this.#send({ id: 0, error: this.#errorBody(new BadFrameError(`undecodable envelope: ${errorMessage(e)}`)) });
      return;
    }
    const id = env.id;
    let handled: Reply | Promise<Reply>;
    try {
      handled = this.#dispatcher.dispatch(env);
      if (!(handled instanceof Promise)) {
        // Answered without waiting (Ping, Hello, Stats, ReleaseLease): sent
        // in this turn, with no promise hops in between.
        if (handled !== null) this.#write(encodeReply(id, handled));
        return;
      }
    } catch (e) {
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
      else if (result !== null) this.#write(encodeReply(id, result as NonNullable<Reply>));
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
    this.#write(encodeFrame(msg));
  }

  /** Corked for the rest of the turn (turn-cork.ts): one read's answers leave in one writev. */
  #write(frame: Buffer): void {
    const socket = this.#socket;
    if (this.#closed || socket.destroyed || !socket.writable) return;
    this.#cork.hold();
    socket.write(frame);
    this.#flow();
  }

  #errorBody(e: unknown): { code: string; message: string } {
    if (isKvtierError(e)) return { code: e.code, message: e.message };
    this.#log.error('internal error', { error: errorMessage(e), stack: e instanceof Error ? e.stack ?? null : null });
    return { code: ErrorCode.KVT_INTERNAL, message: errorMessage(e) };
  }

  async #release(): Promise<void> {
    this.#closed = true;
    const leases = this.#dispatcher.releaseLeases();
    await this.idle();
    await this.#dispatcher.unregister().catch((e: unknown) => this.#log.warn('unregister on close failed', { error: errorMessage(e) }));
    this.#log.debug('connection closed', { leasesReleased: leases });
  }
}
