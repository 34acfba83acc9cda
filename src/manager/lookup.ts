/**
 * Lookup: how much of a prompt's prefix the tiers hold, and a lease on it.
 *
 *   hash chunk by chunk ─► host run, then the disk index (local_disk) for
 *   the chunks past it (without a remote, stop at the first chunk neither
 *   holds) ─► one pipelined remote `contains` for the rest ─► pace check
 *   (remote-pace.ts, for remote-only chunks) ─► pin the host chunks under a
 *   lease and queue fetches of the others into the host tier, in position
 *   order: disk chunks from disk (promoted), remote-only ones from the remote
 *   tier. prefetch-window.ts starts them a window of bytes at a time and
 *   starts more as Retrieves read the landed ones out.
 *
 * One Lookup answers for every rank of a TP/PP engine (Hello.lookup_ranks):
 * the prompt is hashed once (in the first rank's namespace), a chunk position
 * counts only when every rank's chunk of it is held (host, disk or remote;
 * one `contains` for all ranks' rest), and each rank gets a lease of its
 * own in its namespace, so its worker Retrieves and releases only its shard.
 * Ranks that share a namespace (MLA one copy) are checked and fetched once.
 *
 * A position's host presence is one probe of the chain-hash index from the
 * raw hash bytes (host-groups.ts), whatever the rank count; a ChunkId is
 * printed only for a chunk some tier must be asked about by name, so a warm
 * host-tier Lookup builds no string per chunk. Its leases share one record
 * (leases.ts LeaseGroup): one flat entries array, no object per chunk.
 */
import type { Namespace } from '../chunking/namespace.js';
import { errorMessage } from '../errors.js';
import { chunkCount, HASH_BYTES } from '../chunking/prefix-hash.js';
import { ChunkId } from '../tiers/chunk-id.js';
import { entryIn, type HostGroup } from '../tiers/host-groups.js';
import type { HostEntry } from '../tiers/host-tier.js';
import { hashAddress, type ChunkAddress } from './address.js';
import type { MissReason } from './counters.js';
import { LeaseGroup } from './leases.js';
import type { ManagerParts } from './parts.js';
import { PrefetchWindow } from './prefetch-window.js';
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
  // The chain hashes, set by the walk (the buffer it fills) before any probe.
  let hashes: Buffer = EMPTY;
  // whole[i]: position i's chain-hash group when every slot has its entry
  // in it (the common case, checked against the names beside the group's
  // entries, no entry loaded), else null; found[i * R + q]: slot q's entry
  // of such a position, null when absent, made on the first one. One group
  // probe per position whatever R is, from the raw hash bytes
  // (host-groups.ts); a lease finds a whole position's entries in the group.
  const most = 'tokens' in address ? chunkCount(address.tokens.byteLength >>> 2, p.chunkSize, p.saveUnfullChunk) : address.keys.length;
  const whole = new Array<HostGroup | null>(most);
  let found: Array<HostEntry | null> | null = null;
  const probe = (i: number): boolean => {
    const group = p.host.groupAt(hashes, i * HASH_BYTES);
    if (group !== undefined && holdsAll(group, spaces)) {
      whole[i] = group;
      return true;
    }
    whole[i] = null;
    found ??= new Array<HostEntry | null>(most * R);
    for (let q = 0; q < R; q++) found[i * R + q] = entryIn(group, spaces[q].id, q) ?? null;
    return false;
  };
  const entryAt = (q: number, i: number): HostEntry | null => {
    const g = whole[i];
    return g !== null ? entryIn(g, spaces[q].id, q)! : found![i * R + q];
  };
  // A chunk's id is printed (hex) only when a tier must be asked by name:
  // the disk index, the remote tier, a fetch, a miss reason.
  const printed: Array<ChunkId | undefined> = [];
  const idAt = (q: number, i: number): ChunkId => {
    const e = entryAt(q, i);
    if (e !== null) return e.id;
    let id = printed[i];
    if (id === undefined) printed[i] = id = ChunkId.at(nsId, hashes, i);
    return id.inNamespace(spaces[q].id);
  };
  const localAt = (q: number, i: number): boolean => entryAt(q, i) !== null || (disk !== null && disk.has(idAt(q, i).hostKey));
  const allLocal = (i: number): boolean => {
    for (let q = 0; q < R; q++) if (!localAt(q, i)) return false;
    return true;
  };
  // The leading run held here (host or disk): never cut by the remote pace.
  let localRun = 0;
  let broken = false;
  // Each position is probed once while hashing; again after a remote answer.
  // The address's bytes (tokens, seed, keys) are read here only, before the
  // first await: they are a loan of the connection's read buffer
  // (connection.ts), reused once this turn ends.
  const walked = hashAddress(p, spaces[0], address, (i, h) => {
    hashes = h;
    const all = probe(i);
    if (!broken && all) {
      localRun = i + 1;
      return false;
    }
    broken = true;
    if (disk !== null && localRun === i && allLocal(i)) {
      localRun = i + 1;
      return false;
    }
    return remote === null;
  });
  hashes = walked.hashes;
  const count = walked.count;
  let hit = localRun;
  let remoteDown = remote === null && p.sync.configured;
  let slowCut = false;
  if (remote !== null && localRun < count) {
    // Every rank's rest in one pipelined call, position-major: rest[(i - localRun) * R + q].
    const rest: ChunkId[] = [];
    for (let i = localRun; i < count; i++) for (let q = 0; q < R; q++) rest.push(idAt(q, i));
    let remoteFound: boolean[] = [];
    try {
      remoteFound = await remote.contains(rest);
    } catch (e) {
      remoteDown = true;
      p.log.warn('remote lookup failed; answering from the host tier', { error: errorMessage(e) });
    }
    // The host may have changed while the remote answered (a store, a fetch landing, an eviction).
    for (let i = 0; i < count; i++) probe(i);
    let cut = localRun;
    let localOnly = true;
    while (hit < count) {
      let held = true;
      let here = true;
      for (let q = 0; q < R && held; q++) {
        const l = localAt(q, hit);
        if (!l) here = false;
        held = l || remoteFound[(hit - localRun) * R + q] === true;
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
  if (hit < count) {
    let missing = idAt(0, hit);
    for (let q = 0; q < R; q++) {
      if (!localAt(q, hit)) {
        missing = idAt(q, hit);
        break;
      }
    }
    p.counters.misses[missReason(p, missing, slowCut, remoteDown)]++;
  }

  let hitTokens = 0;
  for (let i = 0; i < hit; i++) hitTokens += walked.tokensOf(i);
  // Per distinct namespace and position: the host entry, or the one fetch
  // every lease of that namespace waits for.
  let hostChunks = 0;
  let diskChunks = 0;
  // Tokens position i covers, for the pace model: opaque keys cover none, so a block's worth.
  const paceTokens = (i: number): number => chunkTokens(walked.tokensOf(i), spaces[0].fingerprint.blockSize);
  // The namespace's bytes per token, from the first chunk this Lookup finds in the host tier.
  let learned = false;
  const learn = (entry: HostEntry, i: number): void => {
    if (learned) return;
    learned = true;
    p.pace.learnChunk(nsId, entry.slab.buf.length, paceTokens(i));
  };
  const fetching: Array<{ at: number; id: ChunkId; onDisk: boolean }> = [];
  // The chain-hash group of each position every rank holds in the host tier: pinned once for all leases.
  const groups = whole;
  groups.length = hit;
  let perEntry = false;
  for (let i = 0; i < hit; i++) {
    const g = groups[i];
    if (g !== null) {
      hostChunks++;
      learn(g.entries[0], i);
      continue;
    }
    perEntry = true;
    let inLocal = true;
    for (let q = 0; q < R; q++) {
      const entry = found![i * R + q];
      if (entry !== null) {
        learn(entry, i);
        continue;
      }
      const id = idAt(q, i);
      const onDisk = disk !== null && disk.has(id.hostKey);
      if (!onDisk) inLocal = false;
      if (opts.noLease !== true) fetching.push({ at: i * R + q, id, onDisk });
    }
    if (inLocal) diskChunks++;
  }
  const leaseIds: number[] = [];
  if (opts.noLease !== true && hit > 0) {
    const entries = found ?? [];
    if (entries.length > hit * R) entries.length = hit * R;
    const group = new LeaseGroup(hit, R, entries, groups, perEntry, walked.tokensOf);
    const leases = p.leases.create(group, ranks.map((ns) => ns.id), slotOf, opts.owner, opts.ttlMs ?? p.leaseTtlMs);
    for (const g of groups) if (g !== null) p.host.pinGroup(g);
    for (const lease of leases) {
      leaseIds.push(lease.id);
      if (!perEntry) continue;
      for (let i = 0; i < hit; i++) {
        const entry = groups[i] === null ? entries[i * R + lease.slot] : null;
        if (entry !== null) p.host.pinFound(entry);
      }
    }
    if (fetching.length > 0) {
      const fetch = (id: ChunkId, onDisk: boolean): Promise<HostEntry | null> => (onDisk ? fetchLocalFirst(p, id) : fetchRemote(p, id));
      const tokensAt = (at: number): number => paceTokens((at / R) | 0);
      const window = new PrefetchWindow(group, p.host, p.prefetchWindowBytes, p.prefetchBudget, p.pace.chunkBytes(nsId, tokensAt(fetching[0].at)), fetch);
      group.window = window;
      for (const f of fetching) window.add(f.at, f.id, f.onDisk);
      const first = window.start();
      if (first.length > 0) measureFetches(p, nsId, first.map((f) => f.fetch), first.map((f) => tokensAt(f.at)), started);
    }
  }
  const askedTokens = 'tokens' in address ? address.tokens.byteLength >>> 2 : 0; // a length, not the loaned bytes
  p.counters.recordLookup(count, hit, hostChunks, hitTokens, askedTokens, remote !== null, diskChunks);
  return { hitTokens, hitChunks: hit, hostChunks, diskChunks, remoteChunks: hit - hostChunks - diskChunks, leaseId: leaseIds[0] ?? 0, leaseIds };
}

const EMPTY = Buffer.alloc(0);

/** Whether `group` has an entry of every namespace of `spaces` (rank q's usually at index q). */
function holdsAll(group: HostGroup, spaces: readonly Namespace[]): boolean {
  const names = group.names;
  if (names.length < spaces.length) return false;
  for (let q = 0; q < spaces.length; q++) {
    const id = spaces[q].id;
    if (names[q] !== id && !names.includes(id)) return false;
  }
  return true;
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

/**
 * The read rate this lookup saw: the remote chunks of its first window,
 * their bytes over the time until the last one landed (later ones wait on
 * the worker reading earlier ones out, which says nothing about the remote).
 */
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
