/**
 * Token ids on the wire are packed little-endian u32 bytes. These helpers
 * convert at the edges (CLI, tests, benches); the daemon itself only ever
 * slices the packed bytes.
 */
import { BadRequestError } from '../errors.js';

export function packTokens(tokens: ArrayLike<number>): Buffer {
  const out = Buffer.allocUnsafe(tokens.length * 4);
  for (let i = 0; i < tokens.length; i++) out.writeUInt32LE(tokens[i] >>> 0, i * 4);
  return out;
}

export function unpackTokens(bytes: Uint8Array): number[] {
  checkPacked(bytes);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Array<number>(bytes.byteLength / 4);
  for (let i = 0; i < out.length; i++) out[i] = view.getUint32(i * 4, true);
  return out;
}

export function checkPacked(bytes: Uint8Array, what = 'tokens'): void {
  if (bytes.byteLength % 4 !== 0) {
    throw new BadRequestError(`expected packed little-endian u32 for ${what}, got ${bytes.byteLength} bytes (not a multiple of 4)`);
  }
}
