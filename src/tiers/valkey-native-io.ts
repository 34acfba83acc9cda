/**
 * The Valkey tier's jobs on the native data path (valkey-native.ts): one
 * native job per chunk instead of one glide request per segment.
 *
 *   write  every segment, then the manifest with its checksums patched in
 *   read   a namespace of known shape: manifest + every segment in one job,
 *          the segments straight into the caller's slab
 *   else   the manifest alone, then its segments
 *
 * Each returns 'glide' (or 'redirected' after a MOVED/ASK) when glide must
 * carry the chunk instead: no node known for the slot, a shape that was not
 * the guess, a value too large for the manifest buffer.
 */
import { CorruptValueError, errorMessage } from '../errors.js';
import type { ChunkId } from './chunk-id.js';
import type { Slab } from './host-memory.js';
import { decodeValue, segmentRedisKey, type ChunkHeader } from './valkey-format.js';
import { noop, takeSlab, type ValkeyIo } from './valkey-io.js';
import type { NativeDataPath } from './valkey-native.js';
import { judgeSegments, segmentsFailed } from './valkey-segments.js';

/** A manifest read by the native path lands in a buffer of this size; a bigger value goes through glide. */
const MANIFEST_CAP = 65_536;
const EMPTY = Buffer.alloc(0);

/**
 * One native job: every segment, then the manifest. 'glide' when no
 * cluster node is known for the chunk's slot, or the node redirected it
 * (MOVED/ASK: no manifest was written); the caller then writes it through glide.
 */
export async function writeNative(io: ValkeyIo, native: NativeDataPath, base: string, stored: Buffer, segmentBytes: number, manifest: Buffer, offsets: Uint32Array, n: number, ttl: number | undefined): Promise<boolean | 'glide'> {
  const keys = Array.from({ length: n }, (_, i) => segmentRedisKey(base, i));
  try {
    // Segments outlive their manifest by a minute, as on the glide path.
    const job = native.write(keys, stored, segmentBytes, ttl === undefined ? 0 : ttl + 60, base, manifest, offsets, ttl ?? 0, io.partTimeoutMs);
    if (job === null) return 'glide';
    await job;
    return true;
  } catch (e) {
    return io.nativeFailed(native, `SET ${base} (${stored.length} bytes in ${n} segments)`, e) ? 'glide' : false;
  }
}

/** The value under `base` read natively when it fits MANIFEST_CAP, else through glide. */
export async function manifestNative(io: ValkeyIo, native: NativeDataPath, base: string): Promise<Buffer | null> {
  let res;
  try {
    const job = native.read(base, MANIFEST_CAP, [], EMPTY, 1, io.partTimeoutMs);
    if (job === null) return io.getValue(base);
    res = await job;
  } catch (e) {
    // Redirected (cluster): glide reads it while the slot map is refreshed.
    return io.nativeFailed(native, `GET ${base}`, e) ? io.getValue(base) : null;
  }
  if (res.manifestState === 'too-long') return io.getValue(base);
  return res.manifest;
}

/**
 * One native job for a chunk whose shape is known from its namespace's
 * last manifest: the manifest and every segment, the segments straight
 * into the slab. 'glide' when the shape is unknown or was not the guess,
 * or no node is known for the slot; 'redirected' after a MOVED/ASK.
 */
export async function readNative(io: ValkeyIo, native: NativeDataPath, key: ChunkId, base: string, allocate: ((bytes: number) => Slab | null) | undefined): Promise<Slab | null | 'glide' | 'redirected'> {
  const guess = io.shapes.get(key.namespaceId);
  if (guess === undefined || guess.count === 0) return 'glide';
  const intoSlab = io.serde === 'naive';
  const dest = intoSlab ? takeSlab(allocate, guess.len) : { buf: Buffer.allocUnsafe(guess.len), release: noop };
  if (dest === null) return io.miss();
  const keys = Array.from({ length: guess.count }, (_, i) => segmentRedisKey(base, i));
  let res;
  try {
    const job = native.read(base, MANIFEST_CAP, keys, dest.buf, guess.seg, io.partTimeoutMs);
    if (job === null) {
      dest.release();
      return 'glide';
    }
    res = await job;
  } catch (e) {
    dest.release();
    return io.nativeFailed(native, `GET ${base}`, e) ? 'redirected' : io.miss();
  }
  if (res.manifestState === 'nil') {
    dest.release();
    return io.miss();
  }
  let header: ChunkHeader;
  try {
    if (res.manifest === null) throw new CorruptValueError(`${base}: manifest larger than ${MANIFEST_CAP} bytes`);
    header = decodeValue(res.manifest).header;
    if (header.ns !== key.namespaceId) throw new CorruptValueError(`${base} holds a chunk of namespace "${header.ns}"`);
  } catch (e) {
    dest.release();
    // An inline value over the cap, or anything that does not decode: glide reads it again and judges it.
    if (res.manifestState === 'too-long' || e instanceof CorruptValueError) return 'glide';
    throw e;
  }
  if (header.segs === undefined || header.len !== guess.len || header.seg !== guess.seg || header.segs.length !== guess.count) {
    dest.release();
    return 'glide';
  }
  const verdict = judgeSegments(header, res.got, res.sums);
  if (verdict !== 'ok') {
    dest.release();
    return segmentsFailed(io, base, header, verdict);
  }
  if (intoSlab && header.serde === 'naive') {
    io.hit(key.namespaceId, header);
    return dest;
  }
  // Another serde: the segments were staged; decode into a slab, then let the staging go.
  let out: Slab | null = null;
  try {
    out = await io.decodeInto(header, dest.buf, (bytes) => {
      const got = allocate ? allocate(bytes) : { buf: Buffer.allocUnsafe(bytes), release: noop };
      out = got;
      return got;
    }, allocate !== undefined || intoSlab);
  } catch (e) {
    dest.release();
    (out as Slab | null)?.release();
    io.counters.corrupt++;
    io.log('warn', `valkey ${base}: ${errorMessage(e)}; deleted`);
    await io.deleteKeys(base, header.segs.length);
    return io.miss();
  }
  if (out !== dest) dest.release();
  if (out === null) return io.miss();
  io.hit(key.namespaceId, header);
  return out;
}

/**
 * The segments of a manifest already read, natively into `joined`; null
 * for a miss; 'glide' when no node is known for the slot or it redirected.
 */
export async function segmentsNative(io: ValkeyIo, native: NativeDataPath, base: string, header: ChunkHeader, joined: Buffer): Promise<Buffer | null | 'glide'> {
  const n = header.segs?.length ?? 0;
  const keys = Array.from({ length: n }, (_, i) => segmentRedisKey(base, i));
  let res;
  try {
    const job = native.read('', 0, keys, joined, header.seg ?? header.len, io.partTimeoutMs);
    if (job === null) return 'glide';
    res = await job;
  } catch (e) {
    return io.nativeFailed(native, `GET ${base} segments`, e) ? 'glide' : null;
  }
  const verdict = judgeSegments(header, res.got, res.sums);
  if (verdict === 'ok') return joined;
  if (typeof verdict === 'object') throw new CorruptValueError(`${base}: ${verdict.corrupt}`);
  if (verdict === 'missing') {
    io.counters.incomplete++;
    io.log('info', `valkey ${base}: segments missing (evicted or expired); deleted`);
    await io.deleteKeys(base, n);
  }
  return null;
}
