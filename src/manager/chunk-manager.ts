/**
 * The chunk manager: where lookups, stores and retrieves meet the tiers.
 *
 *   address.ts    address ─► ChunkId per chunk (built once, passed down)
 *   lookup.ts     Lookup: host run, remote contains, lease, prefetch
 *   prefetch-window.ts  a Lookup's fetches, a window of bytes at a time
 *   transfers.ts  Store and Retrieve (inline or block form)
 *   keyed.ts      Put / Get / Exists / Invalidate by key
 *   admin.ts      kvtier ls / inspect / clear / pin (pins.ts holds the pins)
 *   remote-sync   fetches remote ─► host, write-behind host ─► remote
 *   disk-sync     host ─► disk in the background, disk ─► host on hits (local_disk)
 *
 * This class owns the state those modules share (ManagerParts, parts.ts)
 * and keeps the method names src/protocol and src/metrics call; each method
 * is one call into the module that does the work.
 */
import type { ChainFn } from '../chunking/prefix-hash.js';
import type { Namespace } from '../chunking/namespace.js';
import { LeaseNotFoundError } from '../errors.js';
import type { Logger } from '../log.js';
import type { HostTier } from '../tiers/host-tier.js';
import type { RemoteTier } from '../tiers/tier.js';
import type { ChunkAddress } from './address.js';
import * as admin from './admin.js';
import type { AdminTier, ChunkInfo, NamespaceUsage, PinResult } from './admin.js';
import { ManagerCounters } from './counters.js';
import * as keyed from './keyed.js';
import { LeaseTable, leasedEntry, type Lease } from './leases.js';
import { lookup, type LookupOptions, type LookupResult } from './lookup.js';
import type { ManagerParts } from './parts.js';
import { PrefixPins } from './pins.js';
import { PrefetchBudget, prefetchBudgetBytes, type PrefetchBudgetStats } from './prefetch-budget.js';
import { prefetchWindowBytes } from './prefetch-window.js';
import { RemotePace, type RemotePaceSnapshot } from './remote-pace.js';
import { RemoteSync } from './remote-sync.js';
import type { DiskSync } from './disk-sync.js';
import * as transfers from './transfers.js';
import type { BlockCopier, BlockRetrieveResult, StoreCopiedResult, StoreSource } from './transfers.js';

export type { RemoteTier } from '../tiers/tier.js';
export type { ChunkAddress } from './address.js';
export type { LookupResult } from './lookup.js';
export type { BlockCopier, BlockRetrieveResult, StoreCopiedResult, StoreSource } from './transfers.js';

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
  /** The prefix-hash chain backend (native/ chainHashes when loaded); null or absent: the JavaScript chain. */
  chain?: ChainFn | null;
  /** pin_budget_bytes: host bytes `kvtier pin` may hold (absent: 0, pinning off). */
  pinBudgetBytes?: number;
  /** Bytes of one Lookup's fetches in flight or landed and unread (absent: a quarter of the host pool, at most 1 GiB). */
  prefetchWindowBytes?: number;
  /** Those bytes over every Lookup at once (absent: half the host pool). */
  prefetchBudgetBytes?: number;
}

export class ChunkManager {
  readonly host: HostTier;
  readonly remote: RemoteTier | null;
  readonly disk: DiskSync | null;
  readonly counters: ManagerCounters;
  readonly #p: ManagerParts;
  readonly #pins: PrefixPins;

  constructor(opts: ManagerOptions) {
    this.counters = new ManagerCounters(opts.chunkSize);
    this.host = opts.host;
    this.remote = opts.remote;
    this.#pins = new PrefixPins(opts.host, opts.pinBudgetBytes ?? 0);
    this.disk = opts.disk ?? null;
    this.#p = {
      host: opts.host,
      disk: this.disk,
      sync: new RemoteSync({
        host: opts.host, remote: opts.remote, counters: this.counters, localCpu: opts.localCpu,
        writeBehindQueueBytes: opts.writeBehindQueueBytes, writeBehindConcurrency: opts.writeBehindConcurrency, logger: opts.logger,
      }),
      leases: new LeaseTable((lease) => this.#unpinLease(lease)),
      pace: new RemotePace(opts.recomputeTokensPerS ?? null),
      counters: this.counters,
      log: opts.logger,
      chunkSize: opts.chunkSize,
      saveUnfullChunk: opts.saveUnfullChunk,
      leaseTtlMs: opts.leaseTtlMs,
      prefetchWindowBytes: opts.prefetchWindowBytes ?? prefetchWindowBytes(null, opts.host.memory.capacityBytes),
      prefetchBudget: new PrefetchBudget(opts.prefetchBudgetBytes ?? prefetchBudgetBytes(null, opts.host.memory.capacityBytes)),
      chain: opts.chain ?? null,
    };
  }

  get leaseCount(): number {
    return this.#p.leases.size;
  }

  writeBehindStats() {
    return this.#p.sync.writeBehindStats();
  }

  remotePace(): RemotePaceSnapshot {
    return this.#p.pace.snapshot();
  }

  /** `ns`: one namespace, or every rank's of one engine (a lease each, lookup.ts). */
  lookup(ns: Namespace | readonly Namespace[], address: ChunkAddress, opts: LookupOptions): Promise<LookupResult> {
    return lookup(this.#p, Array.isArray(ns) ? ns : [ns as Namespace], address, opts);
  }

  /** Releases lease `leaseId` of `ns`, or of any of the namespaces a multi-rank Lookup leased in. */
  releaseLease(ns: Namespace | readonly Namespace[], leaseId: number): void {
    const spaces = Array.isArray(ns) ? ns : [ns as Namespace];
    let lease;
    for (let k = 0; k < spaces.length && lease === undefined; k++) lease = this.#p.leases.get(leaseId, spaces[k].id);
    if (lease === undefined) throw new LeaseNotFoundError(leaseId);
    this.#p.leases.release(lease);
  }

  /** Everything a closed connection held. */
  releaseOwner(owner: number): number {
    return this.#p.leases.releaseOwner(owner);
  }

  /**
   * Leased chunks as views of pinned host slabs; null for a chunk that could
   * not be had. The caller must call done() once it has copied them out.
   */
  retrieveInline(ns: Namespace, leaseId: number, first: number, num: number): Promise<{ chunks: Array<Buffer | null>; done(): void }> {
    return transfers.retrieveInline(this.#p, ns, leaseId, first, num);
  }

  retrieveBlocks(ns: Namespace, leaseId: number, first: number, num: number, blockIds: Uint32Array, copier: BlockCopier): Promise<BlockRetrieveResult> {
    return transfers.retrieveBlocks(this.#p, ns, leaseId, first, num, blockIds, copier);
  }

  store(ns: Namespace, address: ChunkAddress, source: StoreSource, skipChunks: number): Promise<StoreCopiedResult> {
    return transfers.store(this.#p, ns, address, source, skipChunks);
  }

  put(ns: Namespace, key: Uint8Array, value: Buffer): Promise<boolean> {
    return keyed.put(this.#p, ns, key, value);
  }

  get(ns: Namespace, key: Uint8Array): Promise<Buffer | null> {
    return keyed.get(this.#p, ns, key);
  }

  exists(ns: Namespace, keys: Uint8Array[]): Promise<boolean[]> {
    return keyed.exists(this.#p, ns, keys);
  }

  /** Removes the address's chunks from every tier; with no address, every chunk of the namespace. */
  async invalidate(ns: Namespace, address: ChunkAddress | null): Promise<number> {
    const removed = await keyed.invalidate(this.#p, ns, address);
    this.#pins.prune();
    return removed;
  }

  /** Pinned by `kvtier pin`: chunks and bytes, and the budget. */
  /** The daemon-wide prefetch budget and what it holds now. */
  prefetchStats(): PrefetchBudgetStats {
    return this.#p.prefetchBudget.stats();
  }

  pinStats(): { chunks: number; bytes: number; budgetBytes: number } {
    return { chunks: this.#pins.count, bytes: this.#pins.bytes, budgetBytes: this.#pins.budgetBytes };
  }

  listNamespaces(namespaceId: string | null, tier: AdminTier): Promise<{ namespaces: NamespaceUsage[]; valkeyListed: boolean }> {
    return admin.listNamespaces(this.#p, this.#pins, this.remote, namespaceId, tier);
  }

  inspect(query: { namespaceId: string | null; hash: string } | { ns: Namespace; address: ChunkAddress }): Promise<ChunkInfo[]> {
    return admin.inspect(this.#p, this.#pins, this.remote, query);
  }

  clear(namespaceId: string | null, tier: AdminTier): Promise<admin.ClearResult> {
    return admin.clear(this.#p, this.#pins, this.remote, namespaceId, tier);
  }

  pin(ns: Namespace, address: ChunkAddress, unpin: boolean): Promise<PinResult> {
    return admin.pin(this.#p, this.#pins, ns, address, unpin);
  }

  async drain(): Promise<void> {
    await this.#p.sync.drain();
    await this.disk?.drain();
  }

  async close(): Promise<void> {
    this.#p.leases.close();
    this.#pins.close();
    await this.#p.sync.drain();
    // Disk writes still queued hold host pins: they finish before the host tier goes.
    await this.disk?.drain();
    await this.host.close();
    await this.disk?.close();
    if (this.remote !== null) await this.remote.close();
  }

  #unpinLease(lease: Lease): void {
    const group = lease.group;
    const window = group.window;
    if (group.perEntry) {
      for (let i = 0; i < group.positions; i++) {
        if (group.groups[i] !== null || window?.covers(i * group.stride + lease.slot) === true) continue;
        const entry = leasedEntry(lease, i);
        if (entry !== null) this.host.unpin(entry);
      }
    }
    window?.leaseGone(lease);
    if (--group.live > 0) return;
    for (const g of group.groups) if (g !== null) this.host.unpinGroup(g);
  }
}
