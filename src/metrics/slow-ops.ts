/**
 * The last 512 lookups, stores and retrieves, for "what was slow just now"
 * in `kvtier stats`. A fixed ring of typed arrays: recording a request
 * writes five numbers and allocates nothing (STYLE item 8); sorting happens
 * only when someone asks for the slowest ones.
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

const SIZE = 512;

export class SlowOpRing {
  readonly #op = new Uint8Array(SIZE);
  readonly #ms = new Float64Array(SIZE);
  readonly #chunks = new Uint32Array(SIZE);
  readonly #bytes = new Float64Array(SIZE);
  readonly #at = new Float64Array(SIZE);
  #next = 0;
  #count = 0;

  record(op: number, ms: number, chunks: number, bytes: number): void {
    const i = this.#next;
    this.#op[i] = op;
    this.#ms[i] = ms;
    this.#chunks[i] = chunks;
    this.#bytes[i] = bytes;
    this.#at[i] = Date.now();
    this.#next = (i + 1) % SIZE;
    if (this.#count < SIZE) this.#count++;
  }

  /** The `n` slowest of the recent requests, slowest first. */
  slowest(n = 5): SlowOp[] {
    const idx = Array.from({ length: this.#count }, (_, i) => i);
    idx.sort((a, b) => this.#ms[b] - this.#ms[a]);
    return idx.slice(0, n).map((i) => ({
      op: OPS[this.#op[i]],
      ms: Math.round(this.#ms[i] * 1000) / 1000,
      chunks: this.#chunks[i],
      bytes: this.#bytes[i],
      at: this.#at[i],
    }));
  }

  get size(): number {
    return this.#count;
  }
}
