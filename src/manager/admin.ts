/**
 * The operator's view of the cache (`kvtier ls`, `inspect`, `clear`, `pin`,
 * `unpin`). Admin paths only: they walk the host index and SCAN Valkey, so
 * nothing here runs on a worker's request path.
 *
 * A namespace is named by its 32-hex id (what Hello answers and `kvtier ls`
 * prints). Clearing a namespace removes only keys under that id, in the host
 * index, the disk index and under `<prefix>:{<id>:` in Valkey; with no namespace, every
 * namespace the tiers hold, one by one, the same way.
 */
import type { Namespace } from '../chunking/namespace.js';
import { BadRequestError, ValkeyUnavailableError, errorMessage } from '../errors.js';
import { ChunkId } from '../tiers/chunk-id.js';
import type { RemoteTier } from '../tiers/tier.js';
import { resolveAddress, type ChunkAddress } from './address.js';
import type { DiskSync } from './disk-sync.js';
import type { ManagerParts } from './parts.js';
import type { PrefixPins } from './pins.js';

export const ADMIN_TIERS = ['host', 'disk', 'valkey', 'all'] as const;
export type AdminTier = (typeof ADMIN_TIERS)[number];

export interface NamespaceUsage {
  namespaceId: string;
  hostChunks: number;
  hostBytes: number;
  valkeyChunks: number;
  valkeyBytes: number;
  pinnedChunks: number;
  diskChunks: number;
  diskBytes: number;
}

export interface ChunkInfo {
  namespaceId: string;
  chunkHash: string;
  index: number;
  inHost: boolean;
  hostBytes: number;
  hostAgeS: number;
  pinned: boolean;
  pins: number;
  inValkey: boolean;
  valkeyBytes: number;
  inDisk: boolean;
  diskBytes: number;
}

export interface PinResult {
  chunks: number;
  pinnedChunks: number;
  alreadyChunks: number;
  missingChunks: number;
  overBudgetChunks: number;
  pinnedBytes: number;
  budgetBytes: number;
}

const NAMESPACE_ID = /^[A-Za-z0-9_.-]{1,128}$/;

/** A namespace id from a request ('' or null: none), checked so it can never widen a SCAN pattern. */
export function namespaceIdOf(s: string | null | undefined): string | null {
  if (s === null || s === undefined || s === '') return null;
  if (!NAMESPACE_ID.test(s)) throw new BadRequestError(`expected a namespace id of 1-128 of [A-Za-z0-9_.-], got "${s}"`);
  return s;
}

export function tierOf(s: string | null | undefined): AdminTier {
  if (s === null || s === undefined || s === '') return 'all';
  if (!(ADMIN_TIERS as readonly string[]).includes(s)) throw new BadRequestError(`expected tier host, disk, valkey or all, got "${s}"`);
  return s as AdminTier;
}

/** The remote tier for an admin request that names it; null when the request did not ask for it. */
function remoteFor(p: ManagerParts, tier: AdminTier, remote: RemoteTier | null, strict: boolean): RemoteTier | null {
  if (tier !== 'valkey' && tier !== 'all') return null;
  if (remote === null) {
    if (strict && tier === 'valkey') throw new BadRequestError('valkey is not configured (remote_url)');
    return null;
  }
  if (p.sync.usable() === null) {
    if (strict) throw new ValkeyUnavailableError('valkey is down: its chunks cannot be listed or cleared now');
    return null;
  }
  return remote;
}

/** The disk tier when the request names it; an error when it names it alone and local_disk is not set. */
function diskFor(p: ManagerParts, tier: AdminTier): DiskSync | null {
  if (tier !== 'disk' && tier !== 'all') return null;
  if (p.disk === null && tier === 'disk') throw new BadRequestError('the disk tier is not configured (local_disk)');
  return p.disk;
}

export async function listNamespaces(p: ManagerParts, pins: PrefixPins, remote: RemoteTier | null, namespaceId: string | null, tier: AdminTier): Promise<{ namespaces: NamespaceUsage[]; valkeyListed: boolean }> {
  const out = new Map<string, NamespaceUsage>();
  const row = (ns: string): NamespaceUsage => {
    let u = out.get(ns);
    if (u === undefined) out.set(ns, (u = { namespaceId: ns, hostChunks: 0, hostBytes: 0, valkeyChunks: 0, valkeyBytes: 0, pinnedChunks: 0, diskChunks: 0, diskBytes: 0 }));
    return u;
  };
  for (const [ns, v] of diskFor(p, tier)?.disk.usage(namespaceId) ?? []) {
    const u = row(ns);
    u.diskChunks = v.chunks;
    u.diskBytes = v.bytes;
  }
  if (tier === 'host' || tier === 'all') {
    for (const e of p.host.entries()) {
      if (namespaceId !== null && e.id.namespaceId !== namespaceId) continue;
      const u = row(e.id.namespaceId);
      u.hostChunks++;
      u.hostBytes += e.slab.buf.length;
      if (pins.has(e.id)) u.pinnedChunks++;
    }
  }
  let valkeyListed = false;
  const r = remoteFor(p, tier, remote, tier === 'valkey');
  if (r?.usage !== undefined) {
    try {
      for (const [ns, v] of await r.usage(namespaceId)) {
        const u = row(ns);
        u.valkeyChunks = v.chunks;
        u.valkeyBytes = v.bytes;
      }
      valkeyListed = true;
    } catch (e) {
      if (tier === 'valkey') throw e;
      p.log.warn('valkey listing failed; listing the host tier only', { error: errorMessage(e) });
    }
  }
  return { namespaces: [...out.values()].sort((a, b) => a.namespaceId.localeCompare(b.namespaceId)), valkeyListed };
}

/** Chunks by hash (in one namespace, or wherever a tier holds it) or by the prompt's tokens in `ns`. */
export async function inspect(
  p: ManagerParts, pins: PrefixPins, remote: RemoteTier | null,
  query: { namespaceId: string | null; hash: string } | { ns: Namespace; address: ChunkAddress },
): Promise<ChunkInfo[]> {
  const r = remoteFor(p, 'all', remote, false);
  let ids: ChunkId[];
  if ('hash' in query) {
    const hash = ChunkId.of('x', query.hash).hash;
    const namespaces = new Set<string>();
    if (query.namespaceId !== null) namespaces.add(query.namespaceId);
    else {
      for (const e of p.host.entries()) if (e.id.hash === hash) namespaces.add(e.id.namespaceId);
      for (const ns of p.disk?.disk.usage(null).keys() ?? []) if (p.disk!.has(`${ns}:${hash}`)) namespaces.add(ns);
      if (r?.namespacesOf !== undefined) {
        try {
          for (const ns of await r.namespacesOf(hash)) if (NAMESPACE_ID.test(ns)) namespaces.add(ns);
        } catch (e) {
          p.log.warn('valkey search failed; inspecting the host tier only', { error: errorMessage(e) });
        }
      }
    }
    ids = [...namespaces].map((ns) => ChunkId.of(ns, hash));
  } else {
    ids = resolveAddress(p, query.ns, query.address).ids;
  }
  let valkey: number[] = ids.map(() => 0);
  if (r?.chunkBytes !== undefined && ids.length > 0) {
    try {
      valkey = await r.chunkBytes(ids);
    } catch (e) {
      p.log.warn('valkey inspect failed; showing the host tier only', { error: errorMessage(e) });
    }
  }
  const now = Date.now();
  return ids.map((id, i) => {
    const e = p.host.peek(id);
    return {
      namespaceId: id.namespaceId, chunkHash: id.hash, index: 'hash' in query ? 0 : i,
      inHost: e !== undefined, hostBytes: e?.slab.buf.length ?? 0, hostAgeS: e === undefined ? 0 : (now - e.storedAt) / 1000,
      pinned: pins.has(id), pins: e === undefined ? 0 : e.pins + (e.group?.pins ?? 0), inValkey: valkey[i] > 0, valkeyBytes: valkey[i],
      inDisk: p.disk?.has(id.hostKey) ?? false, diskBytes: p.disk?.disk.lengthOf(id.hostKey) ?? 0,
    };
  });
}

/** Removes what the request names; returns chunks removed per tier, and whether a down Valkey was left as is. */
export async function clear(p: ManagerParts, pins: PrefixPins, remote: RemoteTier | null, namespaceId: string | null, tier: AdminTier): Promise<ClearResult> {
  const r = remoteFor(p, tier, remote, tier === 'valkey');
  const disk = diskFor(p, tier);
  const hostToo = tier === 'host' || tier === 'all';
  const namespaces = new Set<string>();
  if (namespaceId !== null) namespaces.add(namespaceId);
  else {
    if (hostToo) for (const e of p.host.entries()) namespaces.add(e.id.namespaceId);
    for (const ns of disk?.disk.usage(null).keys() ?? []) namespaces.add(ns);
    if (r?.usage !== undefined) for (const ns of (await r.usage(null)).keys()) if (NAMESPACE_ID.test(ns)) namespaces.add(ns);
  }
  let host = 0;
  let valkey = 0;
  let diskChunks = 0;
  for (const ns of namespaces) {
    if (hostToo) {
      host += p.host.removeNamespace(ns);
      pins.dropNamespace(ns);
    }
    if (disk !== null) diskChunks += disk.removeNamespace(ns);
    if (r?.deleteNamespace !== undefined) valkey += await r.deleteNamespace(ns);
  }
  return { host, disk: diskChunks, valkey, valkeySkipped: (tier === 'valkey' || tier === 'all') && remote !== null && r === null };
}

export interface ClearResult {
  host: number;
  disk: number;
  valkey: number;
  valkeySkipped: boolean;
}

/** Pins (or unpins) the host chunks of a prefix; chunks only in Valkey are fetched first. */
export async function pin(p: ManagerParts, pins: PrefixPins, ns: Namespace, address: ChunkAddress, unpin: boolean): Promise<PinResult> {
  pins.prune();
  const { ids, count } = resolveAddress(p, ns, address);
  const res: PinResult = { chunks: count, pinnedChunks: 0, alreadyChunks: 0, missingChunks: 0, overBudgetChunks: 0, pinnedBytes: 0, budgetBytes: pins.budgetBytes };
  for (let i = 0; i < count; i++) {
    const id = ids[i];
    if (unpin) {
      if (pins.remove(id)) res.pinnedChunks++;
      else res.alreadyChunks++;
      continue;
    }
    if (pins.has(id)) {
      res.alreadyChunks++;
      continue;
    }
    let entry = p.host.peek(id);
    if (entry === undefined) {
      const fetched = await p.sync.fetch(id);
      if (fetched !== null && !fetched.doomed && p.host.peek(id) === fetched) entry = fetched;
    }
    if (entry === undefined) res.missingChunks++;
    else if (!pins.fits(entry.slab.buf.length)) res.overBudgetChunks++;
    else {
      pins.add(entry);
      res.pinnedChunks++;
    }
  }
  res.pinnedBytes = pins.bytes;
  return res;
}
