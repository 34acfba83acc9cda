/**
 * The last 256 lookups, the last 256 stores and the last 256 retrieves, for
 * "what was slow just now" and the lookup latency percentiles in `kvtier
 * stats`. One ring per op, so a burst of stores does not push the lookups
 * out. Fixed typed arrays: recording a request writes five numbers and
 * allocates nothing (STYLE item 8); sorting happens only when someone asks.
 */

export const OPS = ['lookup', 'store', 'retrieve'] as const;
export type OpName = (typeof OPS)[number];

export interface SlowOp {
  op: OpName;
  ms: number;
  chunks: number;
  bytes: number;
  /** Unix time in ms when the request finished. */
  at: number;
}

/** Entries kept per op. */
export const PER_OP = 256;
const SIZE = PER_OP * OPS.length;

export class SlowOpRing {
  readonly #ms = new Float64Array(SIZE);
  readonly #chunks = new Uint32Array(SIZE);
  readonly #bytes = new Float64Array(SIZE);
  readonly #at = new Float64Array(SIZE);
  readonly #next = new Uint32Array(OPS.length);
  readonly #count = new Uint32Array(OPS.length);

  /** `op` is an index into OPS. */
  record(op: number, ms: number, chunks: number, bytes: number): void {
    const slot = this.#next[op];
    const i = op * PER_OP + slot;
    this.#ms[i] = ms;
    this.#chunks[i] = chunks;
    this.#bytes[i] = bytes;
    this.#at[i] = Date.now();
    this.#next[op] = (slot + 1) % PER_OP;
    if (this.#count[op] < PER_OP) this.#count[op]++;
  }

  /** The `n` slowest of the recent requests, slowest first. */
  slowest(n = 5): SlowOp[] {
    const idx: number[] = [];
    for (let op = 0; op < OPS.length; op++) for (let k = 0; k < this.#count[op]; k++) idx.push(op * PER_OP + k);
    idx.sort((a, b) => this.#ms[b] - this.#ms[a]);
    return idx.slice(0, n).map((i) => ({
      op: OPS[Math.floor(i / PER_OP)],
      ms: Math.round(this.#ms[i] * 1000) / 1000,
      chunks: this.#chunks[i],
      bytes: this.#bytes[i],
      at: this.#at[i],
    }));
  }

  /** p50, p99 and max of the op's recent latencies, in whole microseconds (0s before the first). */
  latencyUs(op: number): { p50: number; p99: number; max: number } {
    const n = this.#count[op];
    const us = Array.from(this.#ms.subarray(op * PER_OP, op * PER_OP + n), (ms) => ms * 1000).sort((a, b) => a - b);
    const pick = (q: number): number => (n === 0 ? 0 : Math.round(us[Math.min(n - 1, Math.floor(q * n))]));
    return { p50: pick(0.5), p99: pick(0.99), max: pick(1) };
  }

  get size(): number {
    return this.#count.reduce((a, b) => a + b, 0);
  }
}
