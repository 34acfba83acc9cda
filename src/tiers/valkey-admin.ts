/**
 * What `kvtier ls` and `kvtier inspect` ask of Valkey: chunks and bytes per
 * namespace (SCAN over `<prefix>:{*`, then STRLEN of every key, manifests
 * and segments, pipelined), and one chunk's stored size. Admin paths only:
 * a SCAN walks the whole keyspace, never run on a request's path.
 *
 *   <prefix>:{<namespace>:<hash>}        a chunk (its manifest when segmented)
 *   <prefix>:{<namespace>:<hash>}:s<i>   its segments
 */
import { asBuffer, type ValkeyIo } from './valkey-io.js';

/** Keys per STRLEN pipeline. */
const BATCH = 512;

export interface ValkeyUsage {
  chunks: number;
  bytes: number;
}

const escapeGlob = (s: string): string => s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);

/** Chunks and stored bytes per namespace; only `namespaceId`'s when given. */
export async function valkeyUsage(io: ValkeyIo, prefix: string, namespaceId: string | null): Promise<Map<string, ValkeyUsage>> {
  const keys = await io.pool.scanKeys(`${escapeGlob(prefix)}:{${namespaceId === null ? '' : `${escapeGlob(namespaceId)}:`}*`);
  const head = `${prefix}:{`;
  const out = new Map<string, ValkeyUsage>();
  for (let i = 0; i < keys.length; i += BATCH) {
    const part = keys.slice(i, i + BATCH);
    const lens = await io.run(part.map((key) => ({ op: 'strlen', key }) as const));
    if (lens === null) throw new Error('valkey is not available');
    part.forEach((k, j) => {
      const rest = k.slice(head.length);
      const colon = rest.indexOf(':');
      if (!k.startsWith(head) || colon <= 0) return;
      const ns = rest.slice(0, colon);
      let u = out.get(ns);
      if (u === undefined) out.set(ns, (u = { chunks: 0, bytes: 0 }));
      if (k.endsWith('}')) u.chunks++;
      u.bytes += Number(lens[j] ?? 0);
    });
  }
  return out;
}

/** The stored bytes of each chunk key (its manifest or inline value), 0 where absent. */
export async function valkeyChunkBytes(io: ValkeyIo, keys: readonly string[]): Promise<number[]> {
  if (keys.length === 0) return [];
  const lens = await io.run(keys.map((key) => ({ op: 'strlen', key }) as const));
  if (lens === null) throw new Error('valkey is not available');
  return lens.map((n) => (typeof n === 'number' ? n : Number(asBuffer(n)?.toString() ?? 0) || 0));
}

/** Namespaces holding a chunk of this hash (inspect by hash without a namespace). */
export async function valkeyNamespacesOf(io: ValkeyIo, prefix: string, hash: string): Promise<string[]> {
  const keys = await io.pool.scanKeys(`${escapeGlob(prefix)}:{*:${escapeGlob(hash)}}`);
  const head = `${prefix}:{`;
  return keys.filter((k) => k.startsWith(head)).map((k) => k.slice(head.length, k.lastIndexOf(':')));
}
