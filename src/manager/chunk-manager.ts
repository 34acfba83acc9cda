/**
 * The chunk manager: where lookups, stores and retrieves meet the tiers.
 *
 *   Lookup   ─ hash chunk by chunk; host index first, then the disk index,
 *              then one pipelined remote `contains` for the rest; pin the
 *              prefix under a lease and start prefetching disk and remote
 *              chunks into the host tier (a disk hit is promoted to host).
 *   Store    ─ reserve host slabs, fill them (inline copy or one batched
 *              native gather), index them, answer "copied"; then queue them
 *              for the disk tier (background, not awaited) and write-behind
 *              to the remote tier, and answer "committed" (remote).
 *   Retrieve ─ wait for prefetches, copy out (inline) or scatter into the
 *              worker's blocks; a chunk that could not be had is reported as
 *              failed so the worker recomputes it. Never wrong bytes: the host
 *              tier only holds what a worker gave us or the remote tier
 *              verified.
 * Every slab a copy reads or writes is pinned for the duration of the copy,
 * independently of the lease, so an expiring lease cannot free it mid-copy.
 */
import { BadBlockIdError, BadRequestError, LeaseNotFoundError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Namespace } from '../chunking/namespace.js';
import { hashHex, hashKeys, hashTokenChunks } from '../chunking/prefix-hash.js';
import { checkPacked } from '../chunking/tokens.js';
import type { Slab } from '../tiers/host-memory.js';
import type { HostEntry, HostTier } from '../tiers/host-tier.js';
import type { ChunkKey } from '../tiers/tier.js';
import { LeaseTable, type Lease, type LeasedChunk } from './leases.js';
import type { DiskSync } from './disk-sync.js';
import { RemoteSync, type RemoteTier } from './remote-sync.js';
import { ManagerCounters } from './counters.js';
import { RemotePace, type RemotePaceSnapshot } from './remote-pace.js';

export type { RemoteTier } from './remote-sync.js';

/** Copies between a worker's registered KV blocks and chunk buffers (native/). */
export interface BlockCopier {
  readonly chunkBytes: number;
  readonly blocksPerChunk: number;
  gather(jobs: Array<{ blockIds: Uint32Array; dst: Buffer }>): Promise<void>;
  scatter(jobs: Array<{ blockIds: Uint32Array; src: Buffer }>): Promise<void>;
}

export type ChunkAddress = { tokens: Uint8Array } | { keys: Uint8Array[] };

export type StoreSource =
  | { kind: 'inline'; chunks: Buffer[] }
  | { kind: 'blocks'; blockIds: Uint32Array; copier: BlockCopier };

export interface ManagerOptions {
  chunkSize: number;
  saveUnfullChunk: boolean;
  leaseTtlMs: number;
  localCpu: boolean;
  host: HostTier;
  remote: RemoteTier | null;
  /** The disk tier (local_disk), between host and remote. */
  disk?: DiskSync | null;
  writeBehindQueueBytes: number;
  writeBehindConcurrency: number;
  logger: Logger;
  /** recompute_tokens_per_s: remote hits are offered only while loading them beats recomputing (remote-pace.ts). */
  recomputeTokensPerS?: number | null;
}

export interface LookupResult {
  hitTokens: number;
  hitChunks: number;
  hostChunks: number;
  /** Hits found on the disk tier (not in host RAM): prefetched and promoted. */
  diskChunks: number;
  remoteChunks: number;
  leaseId: number;
}

export interface StoreCopiedResult {
  stored: number;
  present: number;
  skipped: number;
  committed: Promise<{ committed: number; failed: number }>;
}

export interface BlockRetrieveResult {
  loaded: number;
  failed: number;
  failedBlocks: Uint32Array;
}

interface ResolvedAddress {
  hashes: Buffer;
  count: number;
  /** Tokens covered by chunk i. */
  tokensOf(i: number): number;
}

export class ChunkManager {
  readonly host: HostTier;
  readonly remote: RemoteTier | null;
  readonly disk: DiskSync | null;
  readonly counters: ManagerCounters;
  readonly #opts: ManagerOptions;
  readonly #log: Logger;
  readonly #leases: LeaseTable;
  readonly #sync: RemoteSync;
  readonly #pace: RemotePace;

  constructor(opts: ManagerOptions) {
    this.#opts = opts;
    this.counters = new ManagerCounters(opts.chunkSize);
    this.host = opts.host;
    this.remote = opts.remote;
    this.disk = opts.disk ?? null;
    this.#log = opts.logger;
    this.#leases = new LeaseTable((lease) => this.#unpinLease(lease));
    this.#pace = new RemotePace(opts.recomputeTokensPerS ?? null);
    this.#sync = new RemoteSync({
      host: opts.host, remote: opts.remote, counters: this.counters, localCpu: opts.localCpu,
      writeBehindQueueBytes: opts.writeBehindQueueBytes, writeBehindConcurrency: opts.writeBehindConcurrency, logger: opts.logger,
    });
  }

  get leaseCount(): number {
    return this.#leases.size;
  }

  writeBehindStats() {
    return this.#sync.writeBehindStats();
  }

  remotePace(): RemotePaceSnapshot {
    return this.#pace.snapshot();
  }

  async lookup(ns: Namespace, address: ChunkAddress, opts: { owner: number; ttlMs?: number; noLease?: boolean }): Promise<LookupResult> {
    const started = process.hrtime.bigint();
    const remote = this.#sync.usable();
    const disk = this.disk;
    let hostRun = 0;
    // Chunks held here (host or disk), from the first: never cut for the remote pace.
    let localRun = 0;
    let broken = false;
    const prefix = `${ns.id}:`;
    // Host keys are built once per chunk and reused below: no repeated hex/string work.
    const keys: string[] = [];
    const local = (key: string): boolean => this.host.has(key) || (disk !== null && disk.has(key));
    const resolved = this.#resolve(ns, address, (i, hashes) => {
      const key = prefix + hashHex(hashes, i);
      keys.push(key);
      if (!broken && this.host.has(key)) {
        hostRun = localRun = i + 1;
        return false;
      }
      broken = true;
      if (disk !== null && localRun === i && local(key)) {
        localRun = i + 1;
        return false;
      }
      return remote === null;
    });
    let hit = localRun;
    if (remote !== null && localRun < resolved.count) {
      const rest: ChunkKey[] = [];
      for (let i = localRun; i < resolved.count; i++) rest.push({ namespaceId: ns.id, hash: keys[i].slice(prefix.length) });
      let remoteFound: boolean[] = [];
      try {
        remoteFound = await remote.contains(rest);
      } catch (e) {
        this.#log.warn('remote lookup failed; answering from the host tier', { error: errorMessage(e) });
      }
      while (hit < resolved.count && (local(keys[hit]) || remoteFound[hit - localRun] === true)) hit++;
      if (hit > localRun && !this.#pace.pays(ns.id)) {
        // Loading the Valkey-only chunks would be slower than prefill: offer
        // the prefix the host and disk tiers hold and let the worker recompute the rest.
        let cut = localRun;
        while (cut < hit && local(keys[cut])) cut++;
        this.counters.remoteSlowSkippedChunks += hit - cut;
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
      const key = keys[i];
      const entry = opts.noLease === true ? this.host.peek(key) : this.host.pin(key);
      if (entry !== undefined && ++hostChunks === 1) this.#pace.learnChunk(ns.id, entry.slab.buf.length, resolved.tokensOf(i));
      const onDisk = entry === undefined && disk !== null && disk.has(key);
      if (onDisk) diskChunks++;
      if (opts.noLease === true) continue;
      const chunk: LeasedChunk = { key, tokens: resolved.tokensOf(i), entry: entry ?? null, pending: null };
      if (onDisk) {
        chunk.pending = this.#fetchDiskFirst({ namespaceId: ns.id, hash: key.slice(prefix.length) }, key);
      } else if (entry === undefined) {
        chunk.pending = this.#sync.fetch({ namespaceId: ns.id, hash: key.slice(prefix.length) }, key);
        fetches.push(chunk.pending);
        fetchTokens.push(chunk.tokens);
      }
      chunks.push(chunk);
    }
    if (fetches.length > 0) this.#measureFetches(ns.id, fetches, fetchTokens, started);
    if (opts.noLease !== true && hit > 0) {
      const lease = this.#leases.create(ns.id, opts.owner, chunks, opts.ttlMs ?? this.#opts.leaseTtlMs);
      leaseId = lease.id;
      for (const chunk of chunks) {
        if (chunk.pending !== null) chunk.pending = this.#pinWhenFetched(lease, chunk, chunk.pending);
      }
    }
    const askedTokens = 'tokens' in address ? address.tokens.byteLength >>> 2 : 0;
    this.counters.recordLookup(resolved.count, hit, hostChunks, hitTokens, askedTokens, remote !== null, diskChunks);
    return { hitTokens, hitChunks: hit, hostChunks, diskChunks, remoteChunks: hit - hostChunks - diskChunks, leaseId };
  }

  /** The read rate this lookup saw: its remote chunks' bytes over the time until the last one landed. */
  #measureFetches(namespaceId: string, fetches: Promise<HostEntry | null>[], tokens: number[], started: bigint): void {
    void Promise.all(fetches).then((entries) => {
      let bytes = 0;
      for (let k = 0; k < entries.length; k++) {
        const e = entries[k];
        if (e === null) return; // a miss says nothing about the rate
        bytes += e.slab.buf.length;
        this.#pace.learnChunk(namespaceId, e.slab.buf.length, tokens[k]);
      }
      this.#pace.recordRead(bytes, Number(process.hrtime.bigint() - started) / 1e6);
    });
  }

  releaseLease(ns: Namespace, leaseId: number): void {
    const lease = this.#leases.get(leaseId, ns.id);
    if (lease === undefined) throw new LeaseNotFoundError(leaseId);
    this.#leases.release(lease);
  }

  /** Everything a closed connection held. */
  releaseOwner(owner: number): number {
    return this.#leases.releaseOwner(owner);
  }

  /**
   * Leased chunks as views of pinned host slabs; null for a chunk that could
   * not be had. The caller must call done() once it has copied them out.
   */
  async retrieveInline(ns: Namespace, leaseId: number, first: number, num: number): Promise<{ chunks: Array<Buffer | null>; done(): void }> {
    const entries = await this.#leasedEntries(ns, leaseId, first, num);
    const chunks = entries.map((e) => (e === null ? null : e.slab.buf));
    this.counters.recordRetrieve(entries);
    return { chunks, done: () => this.#unpinAll(entries) };
  }

  async retrieveBlocks(ns: Namespace, leaseId: number, first: number, num: number, blockIds: Uint32Array, copier: BlockCopier): Promise<BlockRetrieveResult> {
    const lease = this.#lease(ns, leaseId);
    const count = num === 0 ? lease.chunks.length - first : num;
    const perChunk = copier.blocksPerChunk;
    if (blockIds.length !== count * perChunk) {
      throw new BadBlockIdError(`expected ${count * perChunk} block ids for ${count} chunks of ${perChunk} blocks, got ${blockIds.length}`);
    }
    const entries = await this.#leasedEntries(ns, leaseId, first, count);
    const jobs: Array<{ blockIds: Uint32Array; src: Buffer }> = [];
    const failed: number[] = [];
    const failChunk = (j: number): void => {
      for (const b of blockIds.subarray(j * perChunk, (j + 1) * perChunk)) if (b !== 0xffffffff) failed.push(b);
    };
    entries.forEach((entry, j) => {
      if (entry === null || entry.slab.buf.length !== copier.chunkBytes) failChunk(j);
      else jobs.push({ blockIds: blockIds.subarray(j * perChunk, (j + 1) * perChunk), src: entry.slab.buf });
    });
    let loaded = jobs.length;
    try {
      if (jobs.length > 0) await copier.scatter(jobs);
    } catch (e) {
      this.#log.warn('scatter failed; the worker recomputes these chunks', { error: errorMessage(e) });
      entries.forEach((entry, j) => {
        if (entry !== null && entry.slab.buf.length === copier.chunkBytes) failChunk(j);
      });
      loaded = 0;
    } finally {
      this.#unpinAll(entries);
    }
    this.counters.recordRetrieveCounts(loaded, loaded * copier.chunkBytes, count - loaded);
    return { loaded, failed: count - loaded, failedBlocks: Uint32Array.from(failed) };
  }

  async store(ns: Namespace, address: ChunkAddress, source: StoreSource, skipChunks: number): Promise<StoreCopiedResult> {
    const resolved = this.#resolve(ns, address);
    let count = resolved.count;
    if (source.kind === 'inline') {
      count = Math.min(count, skipChunks + source.chunks.length);
    } else {
      const per = source.copier.blocksPerChunk;
      // Block form moves whole chunks only: a partial chunk has no fixed byte size.
      // Opaque keys name one whole chunk each.
      let full = 'keys' in address ? count : 0;
      while (full < count && resolved.tokensOf(full) === this.#opts.chunkSize) full++;
      count = Math.min(full, Math.floor(source.blockIds.length / per));
    }
    let present = 0;
    let skipped = 0;
    const fresh: Array<{ index: number; key: string; slab: Slab }> = [];
    for (let i = skipChunks; i < count; i++) {
      const key = `${ns.id}:${hashHex(resolved.hashes, i)}`;
      if (this.host.has(key)) {
        present++;
        continue;
      }
      const bytes = source.kind === 'inline' ? source.chunks[i - skipChunks].length : source.copier.chunkBytes;
      const slab = this.host.reserve(bytes);
      if (slab === null) {
        skipped++;
        continue;
      }
      fresh.push({ index: i, key, slab });
    }
    try {
      if (source.kind === 'inline') {
        for (const f of fresh) source.chunks[f.index - skipChunks].copy(f.slab.buf);
      } else if (fresh.length > 0) {
        const per = source.copier.blocksPerChunk;
        await source.copier.gather(fresh.map((f) => ({ blockIds: source.blockIds.subarray(f.index * per, (f.index + 1) * per), dst: f.slab.buf })));
      }
    } catch (e) {
      for (const f of fresh) f.slab.release();
      throw e;
    }
    const entries = fresh.map((f) => this.host.insert(f.key, f.slab));
    this.disk?.write(ns.id, entries);
    this.counters.recordStore(entries.length, entries.reduce((n, e) => n + e.slab.buf.length, 0), present, skipped);
    return { stored: entries.length, present, skipped, committed: this.#sync.write(ns.id, entries) };
  }

  async put(ns: Namespace, key: Uint8Array, value: Buffer): Promise<boolean> {
    const r = await this.store(ns, { keys: [key] }, { kind: 'inline', chunks: [value] }, 0);
    return r.stored + r.present === 1;
  }

  async get(ns: Namespace, key: Uint8Array): Promise<Buffer | null> {
    const hex = hashHex(hashKeys(ns.root, [key]), 0);
    const k = `${ns.id}:${hex}`;
    let entry = this.host.pin(k) ?? null;
    if (entry === null) {
      const fetched = await this.#fetchDiskFirst({ namespaceId: ns.id, hash: hex }, k);
      entry = fetched !== null && !fetched.doomed && this.host.peek(k) === fetched ? fetched : null;
      if (entry !== null) this.host.pinEntry(entry);
    }
    if (entry === null) return null;
    const copy = Buffer.from(entry.slab.buf);
    this.host.unpin(entry);
    return copy;
  }

  async exists(ns: Namespace, keys: Uint8Array[]): Promise<boolean[]> {
    const hashes = hashKeys(ns.root, keys);
    const disk = this.disk;
    const found = keys.map((_, i) => {
      const k = `${ns.id}:${hashHex(hashes, i)}`;
      return this.host.has(k) || (disk !== null && disk.has(k));
    });
    const remote = this.#sync.usable();
    const missing = found.flatMap((f, i) => (f ? [] : [i]));
    if (remote !== null && missing.length > 0) {
      try {
        const r = await remote.contains(missing.map((i) => ({ namespaceId: ns.id, hash: hashHex(hashes, i) })));
        missing.forEach((i, j) => {
          found[i] = r[j] === true;
        });
      } catch (e) {
        this.#log.warn('remote exists failed', { error: errorMessage(e) });
      }
    }
    return found;
  }

  /** Removes the address's chunks from every tier; with no address, every chunk of the namespace. */
  async invalidate(ns: Namespace, address: ChunkAddress | null): Promise<number> {
    if (address === null) {
      const removed = Math.max(this.host.removePrefix(`${ns.id}:`), this.disk?.removeNamespace(ns.id) ?? 0);
      const remote = this.#sync.usable();
      if (remote?.deleteNamespace === undefined) return removed;
      try {
        return Math.max(removed, await remote.deleteNamespace(ns.id));
      } catch (e) {
        this.#log.warn('remote namespace invalidate failed', { error: errorMessage(e) });
        return removed;
      }
    }
    const resolved = this.#resolve(ns, address);
    const keys: ChunkKey[] = [];
    let removed = 0;
    for (let i = 0; i < resolved.count; i++) {
      const hash = hashHex(resolved.hashes, i);
      keys.push({ namespaceId: ns.id, hash });
      const onHost = this.host.remove(`${ns.id}:${hash}`);
      if ((this.disk?.remove(`${ns.id}:${hash}`) ?? false) || onHost) removed++;
    }
    const remote = this.#sync.usable();
    if (remote !== null && keys.length > 0) {
      try {
        removed = Math.max(removed, await remote.delete(keys));
      } catch (e) {
        this.#log.warn('remote invalidate failed', { error: errorMessage(e) });
      }
    }
    return removed;
  }

  async drain(): Promise<void> {
    await this.#sync.drain();
    await this.disk?.drain();
  }

  async close(): Promise<void> {
    this.#leases.close();
    await this.#sync.drain();
    // Disk writes still queued hold host pins: they finish before the host tier goes.
    await this.disk?.drain();
    await this.host.close();
    await this.disk?.close();
    if (this.remote !== null) await this.remote.close();
  }

  /** A chunk the disk index names: read and promoted; on a miss there (corrupt, vanished), Valkey. */
  async #fetchDiskFirst(key: ChunkKey, hostKey: string): Promise<HostEntry | null> {
    const disk = this.disk;
    const entry = disk !== null && disk.has(hostKey) ? await disk.fetch(key, hostKey) : null;
    return entry ?? this.#sync.fetch(key, hostKey);
  }

  #resolve(ns: Namespace, address: ChunkAddress, stop?: (i: number, hashes: Buffer) => boolean): ResolvedAddress {
    const chunkSize = this.#opts.chunkSize;
    if ('tokens' in address) {
      checkPacked(address.tokens);
      const total = address.tokens.byteLength >>> 2;
      const { hashes, count } = hashTokenChunks(ns.root, address.tokens, chunkSize, this.#opts.saveUnfullChunk, stop);
      return { hashes, count, tokensOf: (i) => Math.min(chunkSize, total - i * chunkSize) };
    }
    if (address.keys.length === 0) throw new BadRequestError('expected tokens or at least one key in the chunk address');
    const hashes = hashKeys(ns.root, address.keys);
    let count = address.keys.length;
    if (stop !== undefined) {
      for (let i = 0; i < address.keys.length; i++) {
        if (stop(i, hashes)) {
          count = i + 1;
          break;
        }
      }
    }
    return { hashes, count, tokensOf: () => 0 };
  }

  #lease(ns: Namespace, leaseId: number): Lease {
    const lease = this.#leases.get(leaseId, ns.id);
    if (lease === undefined) throw new LeaseNotFoundError(leaseId);
    return lease;
  }

  /** Pinned entries (one extra pin each, for the copy) of a lease's chunks. */
  async #leasedEntries(ns: Namespace, leaseId: number, first: number, num: number): Promise<Array<HostEntry | null>> {
    const lease = this.#lease(ns, leaseId);
    const end = num === 0 ? lease.chunks.length : first + num;
    if (!Number.isInteger(first) || first < 0 || end > lease.chunks.length || end < first) {
      throw new BadRequestError(`expected chunks within the lease's ${lease.chunks.length}, got first_chunk ${first} num_chunks ${num}`);
    }
    const slice = lease.chunks.slice(first, end);
    await Promise.all(slice.map((c) => c.pending));
    return slice.map((c) => {
      const e = c.entry;
      if (e === null || lease.released) return null;
      this.host.pinEntry(e);
      return e;
    });
  }

  #unpinAll(entries: Array<HostEntry | null>): void {
    for (const e of entries) if (e !== null) this.host.unpin(e);
  }

  #unpinLease(lease: Lease): void {
    for (const chunk of lease.chunks) {
      if (chunk.entry !== null) {
        this.host.unpin(chunk.entry);
        chunk.entry = null;
      }
    }
  }

  async #pinWhenFetched(lease: Lease, chunk: LeasedChunk, pending: Promise<HostEntry | null>): Promise<HostEntry | null> {
    const entry = await pending;
    // The entry may have been evicted between the fetch and now: then it is a miss.
    if (entry === null || lease.released || entry.doomed || this.host.peek(chunk.key) !== entry) return null;
    this.host.pinEntry(entry);
    chunk.entry = entry;
    chunk.pending = null;
    return entry;
  }
}
