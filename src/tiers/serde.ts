/**
 * Payload encodings for the Valkey tier (LMCache's `remote_serde`).
 *
 *   naive        the chunk bytes as they are (no copy)
 *   lz4          lz4 block format (lz4-napi, size-prefixed), off the JS thread
 *   lz4-shuffle  bf16 byte planes split first (all low bytes, then all high
 *                bytes), then lz4: exponent bytes of nearby values repeat, so
 *                the high plane compresses where interleaved bytes do not
 *
 * decode() checks the raw length the header promised; a mismatch or a
 * decompression failure is a CorruptValueError, which the tier turns into a
 * miss. docs/valkey.md has the measured ratios and speeds.
 */

import { compress, uncompress } from 'lz4-napi';
import { ConfigError, CorruptValueError, errorMessage } from '../errors.js';

export const SERDE_NAMES = ['naive', 'lz4', 'lz4-shuffle'] as const;
export type SerdeName = (typeof SERDE_NAMES)[number];

export function parseSerde(value: string): SerdeName {
  const v = value.trim().toLowerCase();
  for (const name of SERDE_NAMES) if (name === v) return name;
  throw new ConfigError(`remote_serde "${value}" is not supported; allowed: ${SERDE_NAMES.join(', ')}`);
}

/** Even bytes then odd bytes. An odd trailing byte stays last. */
export function shuffle2(src: Uint8Array): Buffer {
  const n = src.length;
  const half = n >>> 1;
  const out = Buffer.allocUnsafe(n);
  for (let i = 0, j = 0; i < half; i++, j += 2) {
    out[i] = src[j];
    out[half + i] = src[j + 1];
  }
  if (n & 1) out[n - 1] = src[n - 1];
  return out;
}

export function unshuffle2(src: Uint8Array): Buffer {
  const n = src.length;
  const half = n >>> 1;
  const out = Buffer.allocUnsafe(n);
  for (let i = 0, j = 0; i < half; i++, j += 2) {
    out[j] = src[i];
    out[j + 1] = src[half + i];
  }
  if (n & 1) out[n - 1] = src[n - 1];
  return out;
}

export async function encode(serde: SerdeName, raw: Buffer): Promise<Buffer> {
  switch (serde) {
    case 'naive':
      return raw;
    case 'lz4':
      return compress(raw);
    case 'lz4-shuffle':
      return compress(shuffle2(raw));
  }
}

/**
 * lz4-napi's block format starts with the decoded size (u32 little-endian).
 * Checked before decompressing: a corrupt prefix must not make us allocate
 * up to 4 GiB.
 */
function checkLz4Prefix(serde: SerdeName, payload: Buffer, rawLength: number): void {
  const prefix = payload.length >= 4 ? payload.readUInt32LE(0) : -1;
  if (prefix !== rawLength) {
    throw new CorruptValueError(`${serde} payload announces ${prefix} bytes, header says ${rawLength}`);
  }
}

export async function decode(serde: SerdeName, payload: Buffer, rawLength: number): Promise<Buffer> {
  if (serde !== 'naive') checkLz4Prefix(serde, payload, rawLength);
  let out: Buffer;
  try {
    switch (serde) {
      case 'naive':
        out = payload;
        break;
      case 'lz4':
        out = await uncompress(payload);
        break;
      case 'lz4-shuffle':
        out = unshuffle2(await uncompress(payload));
        break;
    }
  } catch (e) {
    throw new CorruptValueError(`${serde} payload does not decode: ${errorMessage(e)}`);
  }
  if (out.length !== rawLength) {
    throw new CorruptValueError(`${serde} payload decodes to ${out.length} bytes, header says ${rawLength}`);
  }
  return out;
}
