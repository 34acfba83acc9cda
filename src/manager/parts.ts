/**
 * What the manager's request modules share: the tiers, the lease table, the
 * remote traffic, the pace model and the counters, plus how an address is
 * hashed. ChunkManager (chunk-manager.ts) owns one of these and hands it to
 * lookup.ts, transfers.ts and keyed.ts, which hold no state of their own.
 */
import type { ChainFn } from '../chunking/prefix-hash.js';
import type { Logger } from '../log.js';
import type { HostTier } from '../tiers/host-tier.js';
import type { DiskSync } from './disk-sync.js';
import type { ManagerCounters } from './counters.js';
import type { LeaseTable } from './leases.js';
import type { PrefetchBudget } from './prefetch-budget.js';
import type { RemotePace } from './remote-pace.js';
import type { RemoteSync } from './remote-sync.js';

export interface ManagerParts {
  readonly host: HostTier;
  /** The disk tier (local_disk), or null. */
  readonly disk: DiskSync | null;
  readonly sync: RemoteSync;
  readonly leases: LeaseTable;
  readonly pace: RemotePace;
  readonly counters: ManagerCounters;
  readonly log: Logger;
  readonly chunkSize: number;
  readonly saveUnfullChunk: boolean;
  readonly leaseTtlMs: number;
  /** Bytes of one Lookup's fetches in flight or landed and unread (prefetch-window.ts). */
  readonly prefetchWindowBytes: number;
  /** Those bytes over every Lookup of the daemon (prefetch-budget.ts). */
  readonly prefetchBudget: PrefetchBudget;
  /** The prefix-hash chain backend; null: the JavaScript chain. */
  readonly chain: ChainFn | null;
}
