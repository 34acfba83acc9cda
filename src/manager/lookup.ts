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
 * One Lookup answers for every rank of a TP/PP engine (Hello.lookup_ranks):
 * the prompt is hashed once (in the first rank's namespace), a chunk position
 * counts only when every rank's chunk of it is held (host, disk or remote;
 * one `contains` for all ranks' rest), and each rank gets a lease of its
 * own in its namespace, so its worker Retrieves and releases only its shard.
 * Ranks that share a namespace (MLA one copy) are checked and fetched once.
 *
 * Each chunk's host presence is asked once and its ChunkId built once
 * (address.ts); the lease keeps the ids for the fetches and the retrieves.
 */
import type { Namespace } from '../chunking/namespace.js';
import { errorMessage } from '../errors.js';
import type { ChunkId } from '../tiers/chunk-id.js';
import { entryIn, type HostEntry } from '../tiers/host-tier.js';
import { chunkCount } from '../chunking/prefix-hash.js';
import { resolveAddress, type ChunkAddress } from './address.js';
import type { MissReason } from './counters.js';
import type { Lease, LeasedChunk } from './leases.js';
import type { ManagerParts } from './parts.js';
import { chunkTokens } from './remote-pace.js';

export interface LookupOptions {
  owner: number;
  ttlMs?: number;
  noLease?: boolean;
}

export interface LookupResult {
  hitTokens: number;
  /** Chunk positions every rank holds. */
  hitChunks: number;
  /** Of hitChunks, positions every rank holds in host memory. */
  hostChunks: number;
  /** Positions not all in host memory but in host or on the disk tier for every rank: fetched from disk and promoted. */
  diskChunks: number;
  remoteChunks: number;
  /** The first rank's lease (0 when nothing is pinned). */
  leaseId: number;
  /** One lease per rank asked, in order; empty when nothing is pinned. */
  leaseIds: number[];
}

/** `ranks`: the namespaces to answer for, one per retrieving worker (one engine: one chain root); duplicates share their checks. */
export async function lookup(p: ManagerParts, ranks: readonly Namespace[], address: ChunkAddress, opts: LookupOptions): Promise<LookupResult> {
  const started = process.hrtime.bigint();
  const remote = p.sync.usable();
  const disk = p.disk;
  const { spaces, slotOf } = distinct(ranks);
  const nsId = spaces[0].id;
  const R = spaces.length;
  // Rank r's chunk i: found in the host tier through the shared chain hash
  // (host.entriesAt, one key string per position whatever R is) and asked once
  // until the remote answer (the host may change while it is awaited); its
  // ChunkId is built only when no host entry carries it.
  let ids: ChunkId[] = [];
  // asked[i * R + r]: undefined until asked, null when absent.
  const most = 'tokens' in address ? chunkCount(address.tokens.byteLength >>> 2, p.chunkSize, p.saveUnfullChunk) : address.keys.length;
  let asked = new Array<HostEntry | null | undefined>(most * R).fill(undefined);
  const hostAt = (r: number, i: number): HostEntry | undefined => {
    let e = asked[i * R + r];
    if (e === undefined) {
      const list = p.host.entriesAt(ids[i]);
      for (let q = 0; q < R; q++) asked[i * R + q] = entryIn(list, spaces[q].id) ?? null;
      e = asked[i * R + r];
    }
    return e ?? undefined;
  };
  const idAt = (r: number, i: number): ChunkId => (r === 0 ? ids[i] : (hostAt(r, i)?.id ?? ids[i].inNamespace(spaces[r].id)));
  const localAt = (r: number, i: number): boolean => hostAt(r, i) !== undefined || (disk !== null && disk.has(idAt(r, i).hostKey));
  const allHost = (i: number): boolean => {
    for (let r = 0; r < R; r++) if (hostAt(r, i) === undefined) return false;
    return true;
  };
  const allLocal = (i: number): boolean => {
    for (let r = 0; r < R; r++) if (!localAt(r, i)) return false;
    return true;
  };
  let hostRun = 0;
  // The leading run held here (host or disk): never cut by the remote pace.
  let localRun = 0;
  let broken = false;
  // Each chunk's host presence is asked once, here while hashing, for the
  // leading run; the chunks past it once, after the remote answer.
  const resolved = resolveAddress(p, spaces[0], address, (i, id) => {
    ids.push(id);
    if (!broken && allHost(i)) {
      hostRun = localRun = i + 1;
      return false;
    }
    broken = true;
    if (disk !== null && localRun === i && allLocal(i)) {
      localRun = i + 1;
      return false;
    }
    return remote === null;
  });
  ids = resolved.ids;
  let hit = localRun;
  let remoteDown = remote === null && p.sync.configured;
  let slowCut = false;
  if (remote !== null && localRun < resolved.count) {
    // Every rank's rest in one pipelined call, position-major: rest[(i - localRun) * R + r].
    const rest: ChunkId[] = [];
    for (let i = localRun; i < resolved.count; i++) for (let r = 0; r < R; r++) rest.push(idAt(r, i));
    let remoteFound: boolean[] = [];
    try {
      remoteFound = await remote.contains(rest);
    } catch (e) {
      remoteDown = true;
      p.log.warn('remote lookup failed; answering from the host tier', { error: errorMessage(e) });
    }
    asked = asked.fill(undefined);
    // The local run may have grown while the remote answered (a store, a fetch landing).
    let cut = localRun;
    let localOnly = true;
    while (hit < resolved.count) {
      let held = true;
      let here = true;
      for (let r = 0; r < R && held; r++) {
        const l = localAt(r, hit);
        if (!l) here = false;
        held = l || remoteFound[(hit - localRun) * R + r] === true;
      }
      if (!held) break;
      if (!here) localOnly = false;
      if (localOnly) cut = hit + 1;
      hit++;
    }
    if (hit > localRun && !p.pace.pays(nsId)) {
      // Loading the Valkey-only chunks would be slower than prefill: offer
      // the prefix the host and disk tiers hold and let the worker recompute the rest.
      p.counters.remoteSlowSkippedChunks += hit - cut;
      hit = cut;
      slowCut = true;
    }
  }
  if (hit < resolved.count) {
    let missing = ids[hit];
    for (let r = 0; r < R; r++) {
      if (!localAt(r, hit)) {
        missing = idAt(r, hit);
        break;
      }
    }
    p.counters.misses[missReason(p, missing, slowCut, remoteDown)]++;
  }

  let hitTokens = 0;
  for (let i = 0; i < hit; i++) hitTokens += resolved.tokensOf(i);
  // Per distinct namespace and position: the host entry, or the one fetch
  // every lease of that namespace waits for (r * hit + i).
  let hostChunks = 0;
  let diskChunks = 0;
  const fetches: Promise<HostEntry | null>[] = [];
  const fetchTokens: number[] = [];
  const entries: Array<HostEntry | undefined> = new Array(R * hit);
  const pendings: Array<Promise<HostEntry | null> | null> = new Array(R * hit).fill(null);
  const chunkIds: ChunkId[] = new Array(R * hit);
  let learned = false;
  for (let i = 0; i < hit; i++) {
    let inHost = true;
    let inLocal = true;
    for (let r = 0; r < R; r++) {
      const entry = hostAt(r, i);
      entries[r * hit + i] = entry;
      if (entry !== undefined) {
        chunkIds[r * hit + i] = entry.id;
        if (!learned) {
          learned = true;
          p.pace.learnChunk(nsId, entry.slab.buf.length, chunkTokens(resolved.tokensOf(i), spaces[0].fingerprint.blockSize));
        }
        continue;
      }
      const id = idAt(r, i);
      chunkIds[r * hit + i] = id;
      inHost = false;
      const onDisk = disk !== null && disk.has(id.hostKey);
      if (!onDisk) inLocal = false;
      if (opts.noLease === true) continue;
      if (onDisk) {
        pendings[r * hit + i] = fetchLocalFirst(p, id);
      } else {
        const f = fetchRemote(p, id);
        pendings[r * hit + i] = f;
        fetches.push(f);
        fetchTokens.push(chunkTokens(resolved.tokensOf(i), spaces[0].fingerprint.blockSize));
      }
    }
    if (inHost) hostChunks++;
    else if (inLocal) diskChunks++;
  }
  if (fetches.length > 0) measureFetches(p, nsId, fetches, fetchTokens, started);
  const leaseIds: number[] = [];
  if (opts.noLease !== true && hit > 0) {
    for (let k = 0; k < ranks.length; k++) {
      const base = slotOf[k] * hit;
      const chunks: LeasedChunk[] = new Array(hit);
      for (let i = 0; i < hit; i++) {
        const entry = entries[base + i];
        if (entry !== undefined) p.host.pinFound(entry);
        chunks[i] = { id: chunkIds[base + i], tokens: resolved.tokensOf(i), entry: entry ?? null, pending: pendings[base + i] };
      }
      const lease = p.leases.create(ranks[k].id, opts.owner, chunks, opts.ttlMs ?? p.leaseTtlMs);
      leaseIds.push(lease.id);
      for (const chunk of chunks) {
        if (chunk.pending !== null) chunk.pending = pinWhenFetched(p, lease, chunk, chunk.pending);
      }
    }
  }
  const askedTokens = 'tokens' in address ? address.tokens.byteLength >>> 2 : 0;
  p.counters.recordLookup(resolved.count, hit, hostChunks, hitTokens, askedTokens, remote !== null, diskChunks);
  return { hitTokens, hitChunks: hit, hostChunks, diskChunks, remoteChunks: hit - hostChunks - diskChunks, leaseId: leaseIds[0] ?? 0, leaseIds };
}

/** The distinct namespaces of `ranks` (by id), and each rank's slot among them. */
function distinct(ranks: readonly Namespace[]): { spaces: Namespace[]; slotOf: number[] } {
  const spaces: Namespace[] = [];
  const slotOf: number[] = [];
  for (const ns of ranks) {
    let slot = spaces.findIndex((s) => s.id === ns.id);
    if (slot < 0) slot = spaces.push(ns) - 1;
    slotOf.push(slot);
  }
  return { spaces, slotOf };
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

/** Why chunk `id`, the first this Lookup could not offer, was a miss (counters.ts MISS_REASONS). */
function missReason(p: ManagerParts, id: ChunkId, slowCut: boolean, remoteDown: boolean): Exclude<MissReason, 'verification_failed' | 'lease_expired'> {
  if (slowCut) return 'slow_skip';
  if (remoteDown) return 'valkey_down';
  return p.host.wasEvicted(id) ? 'evicted' : 'not_stored';
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
