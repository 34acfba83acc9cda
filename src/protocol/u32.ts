/**
 * Packed little-endian u32 fields (token ids, block ids) as Uint32Array
 * views. A view needs 4-byte alignment; bytes decoded out of a frame may sit
 * at any offset, and only then are they copied.
 */
import { BadRequestError } from '../errors.js';

export function u32View(bytes: Uint8Array, what: string): Uint32Array {
  if (bytes.byteLength % 4 !== 0) {
    throw new BadRequestError(`expected packed little-endian u32 for ${what}, got ${bytes.byteLength} bytes (not a multiple of 4)`);
  }
  if (bytes.byteOffset % 4 === 0) return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const copy = new Uint32Array(bytes.byteLength / 4);
  new Uint8Array(copy.buffer).set(bytes);
  return copy;
}
