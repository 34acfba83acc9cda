/**
 * Splits a byte stream into frames: [u32 LE length][payload].
 *
 * Chunks from the socket are kept as a list and only joined when a frame
 * straddles them, so a frame that arrives whole is handed on as a view of
 * the socket's own buffer. A length above maxFrameBytes is reported before
 * any of its payload is buffered: the caller answers and closes.
 *
 * A frame that straddles reads (a 128K-token Lookup is 512 KiB, read 64 KiB
 * at a time) is assembled in a scratch buffer that is lent to the caller;
 * a caller done with the frame's bytes hands it back with reclaim(), and the
 * next such frame reuses it. Unreclaimed, it stays the frame's and a new one
 * is made: allocating 512 KiB per lookup made V8 collect for external memory
 * pressure, which showed up in the lookup p99.
 */
import { FrameTooLargeError } from '../errors.js';
import { FRAME_HEADER_BYTES } from './messages.js';

const SCRATCH_MIN = 1 << 20;
const SCRATCH_MAX = 4 << 20;
const EMPTY = Buffer.alloc(0);

export class FrameDecoder {
  readonly #maxFrameBytes: number;
  #chunks: Buffer[] = [];
  #buffered = 0;
  #scratch: Buffer | null = null;
  #lent: Buffer | null = null;

  constructor(maxFrameBytes: number) {
    this.#maxFrameBytes = maxFrameBytes;
  }

  get bufferedBytes(): number {
    return this.#buffered;
  }

  /** Appends data and returns every complete frame payload. Throws FrameTooLargeError. */
  push(data: Buffer): Buffer[] {
    if (this.#lent !== null) {
      // Not handed back: the frame keeps that memory.
      this.#scratch = null;
      this.#lent = null;
    }
    this.#chunks.push(data);
    this.#buffered += data.length;
    const frames: Buffer[] = [];
    for (;;) {
      if (this.#buffered < FRAME_HEADER_BYTES) break;
      const length = this.#peekLength();
      if (length > this.#maxFrameBytes) throw new FrameTooLargeError(length, this.#maxFrameBytes);
      if (this.#buffered < FRAME_HEADER_BYTES + length) break;
      this.#consume(FRAME_HEADER_BYTES);
      frames.push(this.#consume(length));
    }
    return frames;
  }

  /** The caller no longer reads `frame`'s bytes: its scratch memory may be reused. */
  reclaim(frame: Buffer): void {
    if (this.#lent !== null && frame.buffer === this.#lent.buffer) this.#lent = null;
  }

  #assemblyBuffer(n: number): Buffer {
    if (this.#lent !== null || n > SCRATCH_MAX) return Buffer.allocUnsafe(n);
    if (this.#scratch === null || this.#scratch.length < n) this.#scratch = Buffer.allocUnsafeSlow(Math.max(n, SCRATCH_MIN));
    this.#lent = this.#scratch.subarray(0, n);
    return this.#lent;
  }

  #peekLength(): number {
    const first = this.#chunks[0];
    if (first.length >= FRAME_HEADER_BYTES) return first.readUInt32LE(0);
    const head = Buffer.concat(this.#chunks, FRAME_HEADER_BYTES);
    return head.readUInt32LE(0);
  }

  /**
   * Removes n bytes from the front; a view when they lie in one chunk. An
   * empty frame whose header ended a read leaves no chunk to view: n = 0
   * must not look at the list.
   */
  #consume(n: number): Buffer {
    if (n === 0) return EMPTY;
    this.#buffered -= n;
    const first = this.#chunks[0];
    if (first.length > n) {
      this.#chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (first.length === n) {
      this.#chunks.shift();
      return first;
    }
    const out = this.#assemblyBuffer(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.#chunks[0];
      const take = Math.min(chunk.length, n - filled);
      chunk.copy(out, filled, 0, take);
      filled += take;
      if (take === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(take);
    }
    return out;
  }
}
