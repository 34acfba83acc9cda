/**
 * Lookup: how much of a prompt's prefix the tiers hold, and a lease on it.
 *
 *   hash chunk by chunk ─► host run, then the disk index (local_disk) for
 *   the chunks past it (without a remote, stop at the first chunk neither
 *   holds) ─► one pipelined remote `contains` for the rest ─► pace check
 *   (remote-pace.ts, for remote-only chunks) ─► pin the host chunks under a
 *   lease and start fetching the others into the host tier: disk chunks
 *   from disk (promoted), remote-only ones from the remote tier.
 *
 * Each chunk's host presence is asked once and its ChunkId built once
 * (address.ts); the lease keeps the ids for the fetches and the retrieves.
 */
import type { Namespace } from '../chunking/namespace.js';
import { errorMessage } from '../errors.js';
import type { ChunkId } from '../tiers/chunk-id.js';
import type { HostEntry } from '../tiers/host-tier.js';
import { resolveAddress, type ChunkAddress } from './address.js';
import type { Lease, LeasedChunk } from './leases.js';
import type { ManagerParts } from './parts.js';

export interface LookupOptions {
  owner: number;
  ttlMs?: number;
  noLease?: boolean;
}

export interface LookupResult {
  hitTokens: number;
  hitChunks: number;
  hostChunks: number;
  /** Hits found on the disk tier (not in host RAM): fetched from disk and promoted. */
  diskChunks: number;
  remoteChunks: number;
  leaseId: number;
}

export async function lookup(p: ManagerParts, ns: Namespace, address: ChunkAddress, opts: LookupOptions): Promise<LookupResult> {
  const started = process.hrtime.bigint();
  const remote = p.sync.usable();
  const disk = p.disk;
  const local = (id: ChunkId): boolean => p.host.has(id) || (disk !== null && disk.has(id.hostKey));
  let hostRun = 0;
  // The leading run held here (host or disk): never cut by the remote pace.
  let localRun = 0;
  let broken = false;
  // Each chunk's host presence is asked once, here while hashing, for the
  // leading run; the chunks past it once, after the remote answer.
  const resolved = resolveAddress(p, ns, address, (i, id) => {
    if (!broken && p.host.has(id)) {
      hostRun = localRun = i + 1;
      return false;
    }
    broken = true;
    if (disk !== null && localRun === i && local(id)) {
      localRun = i + 1;
      return false;
    }
    return remote === null;
  });
  const ids = resolved.ids;
  let hit = localRun;
  if (remote !== null && localRun < resolved.count) {
    const rest = ids.slice(localRun, resolved.count);
    let remoteFound: boolean[] = [];
    try {
      remoteFound = await remote.contains(rest);
    } catch (e) {
      p.log.warn('remote lookup failed; answering from the host tier', { error: errorMessage(e) });
    }
    // The local run may have grown while the remote answered (a store, a fetch landing).
    let cut = localRun;
    let localOnly = true;
    while (hit < resolved.count) {
      const here = local(ids[hit]);
      if (!here && remoteFound[hit - localRun] !== true) break;
      if (!here) localOnly = false;
      if (localOnly) cut = hit + 1;
      hit++;
    }
    if (hit > localRun && !p.pace.pays(ns.id)) {
      // Loading the Valkey-only chunks would be slower than prefill: offer
      // the prefix the host and disk tiers hold and let the worker recompute the rest.
      p.counters.remoteSlowSkippedChunks += hit - cut;
      hit = cut;
    }
  }

  let hitTokens = 0;
  for (let i = 0; i < hit; i++) hitTokens += resolved.tokensOf(i);
  let hostChunks = 0;
  let diskChunks = 0;
  let leaseId = 0;
  const chunks: LeasedChunk[] = [];
  const fetches: Promise<HostEntry | null>[] = [];
  const fetchTokens: number[] = [];
  for (let i = 0; i < hit; i++) {
    const id = ids[i];
    const entry = opts.noLease === true ? p.host.peek(id) : p.host.pin(id);
    if (entry !== undefined && ++hostChunks === 1) p.pace.learnChunk(ns.id, entry.slab.buf.length, resolved.tokensOf(i));
    const onDisk = entry === undefined && disk !== null && disk.has(id.hostKey);
    if (onDisk) diskChunks++;
    if (opts.noLease === true) continue;
    const chunk: LeasedChunk = { id, tokens: resolved.tokensOf(i), entry: entry ?? null, pending: null };
    if (onDisk) {
      chunk.pending = fetchLocalFirst(p, id);
    } else if (entry === undefined) {
      chunk.pending = fetchRemote(p, id);
      fetches.push(chunk.pending);
      fetchTokens.push(chunk.tokens);
    }
    chunks.push(chunk);
  }
  if (fetches.length > 0) measureFetches(p, ns.id, fetches, fetchTokens, started);
  if (opts.noLease !== true && hit > 0) {
    const lease = p.leases.create(ns.id, opts.owner, chunks, opts.ttlMs ?? p.leaseTtlMs);
    leaseId = lease.id;
    for (const chunk of chunks) {
      if (chunk.pending !== null) chunk.pending = pinWhenFetched(p, lease, chunk, chunk.pending);
    }
  }
  const askedTokens = 'tokens' in address ? address.tokens.byteLength >>> 2 : 0;
  p.counters.recordLookup(resolved.count, hit, hostChunks, hitTokens, askedTokens, remote !== null, diskChunks);
  return { hitTokens, hitChunks: hit, hostChunks, diskChunks, remoteChunks: hit - hostChunks - diskChunks, leaseId };
}

/** A chunk into the host tier: from disk when the disk index names it, else (or on a miss there: corrupt, vanished) from the remote tier. */
export async function fetchLocalFirst(p: ManagerParts, id: ChunkId): Promise<HostEntry | null> {
  const disk = p.disk;
  const entry = disk !== null && disk.has(id.hostKey) ? await disk.fetch(id) : null;
  return entry ?? fetchRemote(p, id);
}

/**
 * A chunk from the remote tier into the host tier. With a disk tier it is
 * queued for the disk too, so host eviction or a restart does not cost
 * another network read.
 */
function fetchRemote(p: ManagerParts, id: ChunkId): Promise<HostEntry | null> {
  const fetched = p.sync.fetch(id);
  const disk = p.disk;
  if (disk === null) return fetched;
  return fetched.then((entry) => {
    if (entry !== null) disk.write([entry]);
    return entry;
  });
}

/** The read rate this lookup saw: its remote chunks' bytes over the time until the last one landed. */
function measureFetches(p: ManagerParts, namespaceId: string, fetches: Promise<HostEntry | null>[], tokens: number[], started: bigint): void {
  void Promise.all(fetches).then((entries) => {
    let bytes = 0;
    for (let k = 0; k < entries.length; k++) {
      const e = entries[k];
      if (e === null) return; // a miss says nothing about the rate
      bytes += e.slab.buf.length;
      p.pace.learnChunk(namespaceId, e.slab.buf.length, tokens[k]);
    }
    p.pace.recordRead(bytes, Number(process.hrtime.bigint() - started) / 1e6);
  });
}

async function pinWhenFetched(p: ManagerParts, lease: Lease, chunk: LeasedChunk, pending: Promise<HostEntry | null>): Promise<HostEntry | null> {
  const entry = await pending;
  // The entry may have been evicted between the fetch and now: then it is a miss.
  if (entry === null || lease.released || entry.doomed || p.host.peek(chunk.id) !== entry) return null;
  p.host.pinEntry(entry);
  chunk.entry = entry;
  chunk.pending = null;
  return entry;
}
