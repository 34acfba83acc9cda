/**
 * Removing chunks from Valkey: by id (with their segments, whose count comes
 * from a GETRANGE of each manifest's head) and by namespace (SCAN over the
 * namespace's hash-tag pattern). Both count chunks, not keys.
 */
import { segmentRedisKey, decodeValue } from './valkey-format.js';
import { asBuffer, type ValkeyIo } from './valkey-io.js';

/** A manifest header fits in this many bytes up to thousands of segments. */
const HEADER_PROBE_BYTES = 65_536;
/** Keys per pipeline in deleteNamespace. */
const DELETE_BATCH = 512;

/**
 * Deletes chunks with their segments (the segment count comes from a
 * GETRANGE of the manifest's head); counts chunks that existed.
 */
export async function deleteChunks(io: ValkeyIo, bases: readonly string[]): Promise<number> {
  if (bases.length === 0) return 0;
  const heads = await io.run(bases.map((key) => ({ op: 'getrange', key, start: 0, end: HEADER_PROBE_BYTES - 1 })));
  if (!heads) return 0;
  const segs = heads.map((h) => {
    const b = asBuffer(h);
    if (!b || b.length === 0) return 0;
    try {
      const { header } = decodeValue(b);
      return header.segs?.length ?? 0;
    } catch {
      return 0;
    }
  });
  const dels = await io.run(bases.map((base, i) => {
    const list = [base];
    for (let s = 0; s < segs[i]; s++) list.push(segmentRedisKey(base, s));
    return { op: 'del', keys: list } as const;
  }));
  if (!dels) return 0;
  return heads.reduce<number>((n, h) => n + (asBuffer(h)?.length ? 1 : 0), 0);
}

/**
 * Deletes every key of a namespace (chunks and their segments), found by
 * SCAN over `<prefix>:{<namespace id>:*`; counts the chunks (not segments).
 */
export async function deleteNamespace(io: ValkeyIo, prefix: string, namespaceId: string): Promise<number> {
  if (!io.available) return 0;
  const keys = await io.pool.scanKeys(`${prefix}:{${namespaceId}:*`);
  let chunks = 0;
  for (let i = 0; i < keys.length; i += DELETE_BATCH) {
    const part = keys.slice(i, i + DELETE_BATCH);
    // One DEL per key: keys of different chunks may live in different cluster slots.
    const out = await io.run(part.map((k) => ({ op: 'del', keys: [k] }) as const));
    if (out === null) break;
    for (const k of part) if (k.endsWith('}')) chunks++;
  }
  return chunks;
}
