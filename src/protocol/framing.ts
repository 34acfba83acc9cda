/**
 * Splits a byte stream into frames: [u32 LE length][payload].
 *
 * Chunks from the socket are kept as a list and only joined when a frame
 * straddles them, so a frame that arrives whole is handed on as a view of
 * the socket's own buffer. A length above maxFrameBytes is reported before
 * any of its payload is buffered: the caller answers and closes.
 */
import { FrameTooLargeError } from '../errors.js';
import { FRAME_HEADER_BYTES } from './messages.js';

export class FrameDecoder {
  readonly #maxFrameBytes: number;
  #chunks: Buffer[] = [];
  #buffered = 0;

  constructor(maxFrameBytes: number) {
    this.#maxFrameBytes = maxFrameBytes;
  }

  get bufferedBytes(): number {
    return this.#buffered;
  }

  /** Appends data and returns every complete frame payload. Throws FrameTooLargeError. */
  push(data: Buffer): Buffer[] {
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

  #peekLength(): number {
    const first = this.#chunks[0];
    if (first.length >= FRAME_HEADER_BYTES) return first.readUInt32LE(0);
    const head = Buffer.concat(this.#chunks, FRAME_HEADER_BYTES);
    return head.readUInt32LE(0);
  }

  /** Removes n bytes from the front; a view when they lie in one chunk. */
  #consume(n: number): Buffer {
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
    const out = Buffer.allocUnsafe(n);
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
