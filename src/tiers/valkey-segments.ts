/**
 * The segments of a large chunk: how a read of them is judged against its
 * manifest, and the glide read of them.
 *
 *   manifest { seg, segs[] } ─► GET <key>:s0 .. <key>:s<n-1> in parallel ─► verify
 *   each (length, xxh64) ─► copied into one buffer at its offset
 *
 * A segment gone (evicted, expired) makes the chunk incomplete; a wrong one
 * makes it corrupt. Either way every key of the chunk is deleted and the read
 * is a miss. valkey-native-io.ts runs the same read natively and judges it here.
 */
import { CorruptValueError } from '../errors.js';
import { payloadChecksum } from './checksum.js';
import { segmentRange, type ChunkHeader } from './valkey-format.js';
import type { ValkeyIo } from './valkey-io.js';

/** What the segments of one chunk were: 'ok', 'missing', or why they are corrupt. */
export type SegmentsRead = 'ok' | 'missing' | { corrupt: string };

/** Compares what landed with the manifest: lengths, then checksums. */
export function judgeSegments(header: ChunkHeader, got: Float64Array, sums: string[]): SegmentsRead {
  let missing = false;
  const expected = header.segs ?? [];
  for (let i = 0; i < expected.length; i++) {
    const [s, e] = segmentRange(header, i);
    if (got[i] === -1) missing = true;
    else if (got[i] !== e - s) return { corrupt: `segment ${i} is not ${e - s} bytes` };
    else if (sums[i] !== expected[i]) return { corrupt: `segment ${i}: checksum mismatch` };
  }
  return missing ? 'missing' : 'ok';
}

/** A chunk whose segments did not all verify: deleted, a miss. */
export async function segmentsFailed(io: ValkeyIo, base: string, header: ChunkHeader, verdict: Exclude<SegmentsRead, 'ok'>): Promise<null> {
  const segs = header.segs?.length ?? 0;
  if (verdict === 'missing') {
    io.counters.incomplete++;
    io.log('info', `valkey ${base}: segments missing (evicted or expired); deleted`);
  } else {
    io.counters.corrupt++;
    io.log('warn', `valkey ${base}: ${verdict.corrupt}; deleted`);
  }
  await io.deleteKeys(base, segs);
  return io.miss();
}

/**
 * Reads and verifies every segment into `joined` (using fetches already
 * under way in `early`); null for a miss (Valkey down, segment gone).
 */
export async function readSegments(io: ValkeyIo, base: string, header: ChunkHeader, joined: Buffer, early: Promise<Buffer | null | 'down'>[]): Promise<Buffer | null> {
  const sums = header.segs ?? [];
  const reads = sums.map(async (sum, i) => {
    const part = await (early[i] ?? io.fetchSegment(base, i, header.seg));
    if (part === 'down') return 'down' as const;
    if (!part) return 'missing' as const;
    const [s, e] = segmentRange(header, i);
    if (part.length !== e - s) return `segment ${i} is ${part.length} bytes, expected ${e - s}`;
    if (payloadChecksum(part) !== sum) return `segment ${i}: checksum mismatch`;
    part.copy(joined, s);
    return 'ok' as const;
  });
  const results = await Promise.all(reads);
  if (results.includes('down')) return null;
  const bad = results.find((r) => r !== 'ok' && r !== 'missing');
  if (bad) throw new CorruptValueError(`${base}: ${bad}`);
  if (results.includes('missing')) {
    io.counters.incomplete++;
    io.log('info', `valkey ${base}: segments missing (evicted or expired); deleted`);
    await io.deleteKeys(base, sums.length);
    return null;
  }
  return joined;
}
