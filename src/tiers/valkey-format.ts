/**
 * How a chunk is laid out in Valkey (format version 2).
 *
 *   key   <prefix>:{<namespace id>:<hash hex>}        the chunk (inline or manifest)
 *         <prefix>:{<namespace id>:<hash hex>}:s<i>   segment i of a large chunk
 *
 *   value "KVT" 0x01 | u32le header length | msgpackr header | payload (inline only)
 *   header { v, ns, serde, raw, len, sum }              inline: checksum of the payload
 *          { v, ns, serde, raw, len, seg, segs[] }      manifest: segment size + checksums
 *
 * Segments are raw payload slices, so writing them copies nothing. The hash
 * tag {...} puts every key of a chunk in one cluster slot. The manifest is
 * written last and read first: no manifest, no chunk. Anything that does not
 * verify is a CorruptValueError, which the tier turns into a miss + delete.
 */

import { pack, unpack } from 'msgpackr';
import { CorruptValueError, errorMessage } from '../errors.js';
import type { ChunkId } from './chunk-id.js';
import { SERDE_NAMES, type SerdeName } from './serde.js';

export const FORMAT_VERSION = 2;
const MAGIC = [0x4b, 0x56, 0x54, FORMAT_VERSION] as const;
const PREAMBLE = 8;
const MAX_HEADER = 1 << 20;
/** No KV chunk comes near this; a header claiming more is corrupt (and must not make us allocate it). */
export const MAX_CHUNK_BYTES = 1 << 30;

export interface ChunkHeader {
  v: number;
  /** The namespace id the writer was in; checked against the reader's. */
  ns: string;
  serde: SerdeName;
  /** Length of the chunk as the caller gave it. */
  raw: number;
  /** Length of the stored (serde-encoded) payload. */
  len: number;
  /** XXH3-64 of the payload (checksum.ts): inline values only. */
  sum?: string;
  /** Segment size in bytes: manifests only. */
  seg?: number;
  /** XXH3-64 of each segment, in order: manifests only. */
  segs?: string[];
}

/** The chunk's key (its manifest when segmented); the parts were validated when the ChunkId was made. */
export function chunkRedisKey(prefix: string, id: ChunkId): string {
  return id.valkeyKey(prefix);
}

export function segmentRedisKey(chunkKey: string, index: number): string {
  return `${chunkKey}:s${index}`;
}

export function segmentCount(payloadLength: number, segmentBytes: number): number {
  return Math.ceil(payloadLength / segmentBytes);
}

/** [start, end) of segment i in the payload. */
export function segmentRange(header: ChunkHeader, index: number): [number, number] {
  const seg = header.seg ?? header.len;
  return [index * seg, Math.min(header.len, (index + 1) * seg)];
}

/** Preamble + header, with `payload` appended when given (inline values). */
export function encodeValue(header: ChunkHeader, payload?: Buffer): Buffer {
  const head = pack(header);
  const out = Buffer.allocUnsafe(PREAMBLE + head.length + (payload?.length ?? 0));
  out.set(MAGIC, 0);
  out.writeUInt32LE(head.length, 4);
  head.copy(out, PREAMBLE);
  if (payload) payload.copy(out, PREAMBLE + head.length);
  return out;
}

export interface DecodedValue {
  header: ChunkHeader;
  /** View into the value: the inline payload, empty for a manifest. */
  payload: Buffer;
}

function isStringArray(x: unknown): x is string[] {
  return Array.isArray(x) && x.every((s) => typeof s === 'string');
}

function checkHeader(h: unknown): ChunkHeader {
  if (typeof h !== 'object' || h === null) throw new CorruptValueError('header is not a map');
  const r = h as Record<string, unknown>;
  const int = (name: string): number => {
    const v = r[name];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      throw new CorruptValueError(`header field ${name} is not a non-negative integer`);
    }
    return v;
  };
  if (r.v !== FORMAT_VERSION) throw new CorruptValueError(`format version ${String(r.v)} is not ${FORMAT_VERSION}`);
  if (typeof r.ns !== 'string') throw new CorruptValueError('header has no namespace');
  const serde = SERDE_NAMES.find((s) => s === r.serde);
  if (!serde) throw new CorruptValueError(`unknown serde ${String(r.serde)}`);
  const header: ChunkHeader = { v: FORMAT_VERSION, ns: r.ns, serde, raw: int('raw'), len: int('len') };
  if (header.raw > MAX_CHUNK_BYTES || header.len > MAX_CHUNK_BYTES) {
    throw new CorruptValueError(`chunk of ${header.raw} (stored ${header.len}) bytes exceeds ${MAX_CHUNK_BYTES}`);
  }
  if (serde === 'naive' && header.raw !== header.len) {
    throw new CorruptValueError(`naive chunk with raw length ${header.raw} but ${header.len} stored bytes`);
  }
  if (r.segs !== undefined) {
    const seg = int('seg');
    if (!isStringArray(r.segs)) throw new CorruptValueError('segment checksums are not strings');
    if (seg === 0 || r.segs.length !== segmentCount(header.len, seg)) {
      throw new CorruptValueError(`${r.segs.length} segments of ${seg} bytes cannot hold ${header.len} bytes`);
    }
    header.seg = seg;
    header.segs = r.segs;
  } else {
    if (typeof r.sum !== 'string') throw new CorruptValueError('inline value has no checksum');
    header.sum = r.sum;
  }
  return header;
}

/** Parses a value; throws CorruptValueError for anything not written by encodeValue. */
export function decodeValue(value: Buffer): DecodedValue {
  if (value.length < PREAMBLE || MAGIC.some((b, i) => value[i] !== b)) {
    throw new CorruptValueError(`value does not start with the kvtier v${FORMAT_VERSION} magic`);
  }
  const headLen = value.readUInt32LE(4);
  if (headLen > MAX_HEADER || PREAMBLE + headLen > value.length) {
    throw new CorruptValueError(`header length ${headLen} does not fit a ${value.length}-byte value`);
  }
  let raw: unknown;
  try {
    raw = unpack(value.subarray(PREAMBLE, PREAMBLE + headLen));
  } catch (e) {
    throw new CorruptValueError(`header does not decode: ${errorMessage(e)}`);
  }
  const header = checkHeader(raw);
  const payload = value.subarray(PREAMBLE + headLen);
  const expected = header.segs ? 0 : header.len;
  if (payload.length !== expected) {
    throw new CorruptValueError(`payload is ${payload.length} bytes, header says ${expected}`);
  }
  return { header, payload };
}
