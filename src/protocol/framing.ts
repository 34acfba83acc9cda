/**
 * Splits a byte stream into frames: [u32 LE length][payload].
 *
 * Each frame is handed to the caller's callback as soon as its last byte is
 * pushed. A frame that arrives within one push is a view of the pushed
 * bytes; one that straddles pushes is copied into an assembly buffer as its
 * pieces arrive, so the decoder never keeps a view of pushed data past the
 * push. A length above maxFrameBytes is reported before any of its payload
 * is buffered: the caller answers and closes.
 *
 * An assembly buffer is allocated when body bytes arrive and grows by
 * doubling with them, never from the claimed length alone: a peer (or a
 * socket that is not kvtier's) claiming 1 GiB and sending nothing costs
 * nothing.
 *
 * Two ways to own a frame:
 * - Kept (the default): a frame is the caller's for good. Straddling frames
 *   get a buffer of their own.
 * - Lent (the daemon): a frame is valid only until the callback returns. The
 *   daemon's reads land in one buffer shared by every connection (server.ts),
 *   and straddling frames up to SCRATCH_MAX are assembled in one buffer per
 *   connection, reused for every frame: a 128K-token Lookup (512 KiB, read in
 *   pieces) then allocates nothing. Allocating per read and per frame made V8
 *   run an incremental mark-compact every ~40 ms for that external memory
 *   (88 in one `kvtier bench lookup`), which was the lookup p99.
 *   `lends(frame)` says whether a frame is such a loan (the caller copies
 *   what it keeps) or a buffer the caller may keep.
 */
import { FrameTooLargeError } from '../errors.js';
import { FRAME_HEADER_BYTES } from './messages.js';

/** Lent mode: straddling frames up to this size are assembled in the connection's reused buffer. */
const SCRATCH_MAX = 4 << 20;
/** The first allocation of an assembly buffer, at least. */
const GROW_MIN = 64 << 10;
const EMPTY = Buffer.alloc(0);

export interface FrameDecoderOptions {
  /** Frames are valid only until the callback returns (see the file comment). */
  lent?: boolean;
}

export class FrameDecoder {
  readonly #maxFrameBytes: number;
  readonly #lentMode: boolean;
  /** The header being read, when it straddles pushes. */
  readonly #header = Buffer.alloc(FRAME_HEADER_BYTES);
  #headerFill = 0;
  /** The length of the frame being assembled; -1 while none is. */
  #want = -1;
  #body: Buffer = EMPTY;
  #bodyFill = 0;
  /** Lent mode: the reused assembly buffer. */
  #scratch: Buffer | null = null;
  /** Lent mode: the data of the push in progress, whose views are loans. */
  #pushing: Buffer | null = null;

  constructor(maxFrameBytes: number, opts: FrameDecoderOptions = {}) {
    this.#maxFrameBytes = maxFrameBytes;
    this.#lentMode = opts.lent === true;
  }

  /** Bytes of an unfinished frame held (its header included). */
  get bufferedBytes(): number {
    return this.#headerFill + (this.#want >= 0 ? FRAME_HEADER_BYTES + this.#bodyFill : 0);
  }

  /** Appends data and calls onFrame with every frame it completes, in order. Throws FrameTooLargeError. */
  push(data: Buffer, onFrame: (frame: Buffer) => void): void {
    this.#pushing = data;
    try {
      this.#split(data, onFrame);
    } finally {
      this.#pushing = null;
    }
  }

  /**
   * Lent mode: whether `frame` (handed to onFrame, asked before it returns)
   * is memory the decoder or the reader will reuse. False for a frame in a
   * buffer of its own, which the caller may keep.
   */
  lends(frame: Buffer): boolean {
    if (!this.#lentMode) return false;
    return frame.buffer === this.#pushing?.buffer || frame.buffer === this.#scratch?.buffer;
  }

  #split(data: Buffer, onFrame: (frame: Buffer) => void): void {
    const end = data.length;
    let off = 0;
    while (off < end) {
      if (this.#want < 0) {
        let length: number;
        if (this.#headerFill === 0 && end - off >= FRAME_HEADER_BYTES) {
          length = data.readUInt32LE(off);
          off += FRAME_HEADER_BYTES;
        } else {
          const take = Math.min(FRAME_HEADER_BYTES - this.#headerFill, end - off);
          data.copy(this.#header, this.#headerFill, off, off + take);
          this.#headerFill += take;
          off += take;
          if (this.#headerFill < FRAME_HEADER_BYTES) return;
          this.#headerFill = 0;
          length = this.#header.readUInt32LE(0);
        }
        if (length > this.#maxFrameBytes) throw new FrameTooLargeError(length, this.#maxFrameBytes);
        if (end - off >= length) {
          onFrame(length === 0 ? EMPTY : data.subarray(off, off + length));
          off += length;
          continue;
        }
        this.#want = length;
        this.#body = this.#lentMode && this.#scratch !== null ? this.#scratch : EMPTY;
        this.#bodyFill = 0;
      }
      const take = Math.min(this.#want - this.#bodyFill, end - off);
      if (this.#bodyFill + take > this.#body.length) this.#grow(this.#bodyFill + take);
      data.copy(this.#body, this.#bodyFill, off, off + take);
      this.#bodyFill += take;
      off += take;
      if (this.#bodyFill === this.#want) {
        const frame = this.#body.subarray(0, this.#want);
        this.#want = -1;
        this.#body = EMPTY;
        this.#bodyFill = 0;
        onFrame(frame);
      }
    }
  }

  /** A larger assembly buffer, at least `need` bytes, the bytes so far copied over. */
  #grow(need: number): void {
    const size = Math.min(this.#want, Math.max(need, 2 * this.#body.length, GROW_MIN));
    const next = Buffer.allocUnsafeSlow(size);
    this.#body.copy(next, 0, 0, this.#bodyFill);
    this.#body = next;
    if (this.#lentMode && size <= SCRATCH_MAX) this.#scratch = next;
  }
}
