/**
 * The metrics side of the protocol dispatcher's observer: the one place a
 * request's duration is recorded. Each observation goes into its latency
 * histogram (prom-client, pre-bound to its label) and into the slow-op ring,
 * from the same measured seconds; `kvtier stats` reads its lookup latency
 * percentiles from that ring. Chunk and token figures are not here: the
 * manager counts those where they happen (manager/counters.ts).
 *
 * It matches src/protocol/dispatch.ts's RequestObserver by shape, so metrics
 * imports nothing from protocol; daemon.ts, which hands it over, is where
 * the compiler checks the two agree.
 */
import type { Histogram } from 'prom-client';
import { SlowOpRing } from './slow-ops.js';

type Form = 'inline' | 'blocks';
type Op = 'lookup' | 'store' | 'retrieve';

interface Observe {
  observe(seconds: number): void;
}

export interface RequestHistograms {
  lookup: Histogram;
  store: Histogram<'form'>;
  retrieve: Histogram<'form'>;
}

/** Distinct bypass reasons kept; later ones count as "other". */
export const MAX_BYPASS_REASONS = 32;

/** Indices into slow-ops.ts OPS. */
export const LOOKUP = 0;
const STORE = 1;
const RETRIEVE = 2;

export class RequestMetrics {
  readonly ring = new SlowOpRing();
  /** Requests that ended in an error frame, by op. */
  readonly errors: Record<Op, number> = { lookup: 0, store: 0, retrieve: 0 };
  /** Requests clients kept away from kvtier, by reason (at most MAX_BYPASS_REASONS + "other"). */
  readonly bypasses = new Map<string, number>();
  #registered = 0;
  readonly #lookup: Observe;
  readonly #store: Record<Form, Observe>;
  readonly #retrieve: Record<Form, Observe>;

  constructor(h: RequestHistograms) {
    this.#lookup = h.lookup;
    this.#store = { inline: h.store.labels('inline'), blocks: h.store.labels('blocks') };
    this.#retrieve = { inline: h.retrieve.labels('inline'), blocks: h.retrieve.labels('blocks') };
  }

  /** Connections with registered KV memory now. */
  get registeredWorkers(): number {
    return this.#registered;
  }

  lookupDone(seconds: number, hitChunks: number): void {
    this.#lookup.observe(seconds);
    this.ring.record(LOOKUP, seconds * 1000, hitChunks, 0);
  }

  storeCopied(form: Form, seconds: number, chunks: number, bytes: number): void {
    this.#store[form].observe(seconds);
    this.ring.record(STORE, seconds * 1000, chunks, bytes);
  }

  retrieveDone(form: Form, seconds: number, chunks: number, bytes: number): void {
    this.#retrieve[form].observe(seconds);
    this.ring.record(RETRIEVE, seconds * 1000, chunks, bytes);
  }

  failed(op: Op): void {
    this.errors[op]++;
  }

  bypassed(reason: string): void {
    // Reasons come from clients: bounded, so a client cannot grow the map or the metric's series.
    const key = this.bypasses.has(reason) || this.bypasses.size < MAX_BYPASS_REASONS ? reason : 'other';
    this.bypasses.set(key, (this.bypasses.get(key) ?? 0) + 1);
  }

  kvRegistered(): void {
    this.#registered++;
  }

  kvReleased(): void {
    this.#registered--;
  }
}
