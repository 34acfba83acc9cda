/**
 * The Stats reply and `kvtier stats --json`: one snapshot assembled from the
 * same sources the Prometheus registry reads (manager counters, host tier,
 * request metrics, remote view), so the two never disagree. The field names
 * are a user-facing format: src/cli/stats.ts and tools parse them.
 */
import type { ChunkManager } from '../manager/chunk-manager.js';
import type { DiskSyncStats } from '../manager/disk-sync.js';
import type { MissReason } from '../manager/counters.js';
import { missReasons } from './miss-reasons.js';
import type { HostMemory, HostMemoryInfo } from '../tiers/host-memory.js';
import type { HostTier } from '../tiers/host-tier.js';
import { remoteView } from './remote-view.js';
import { LOOKUP, type RequestMetrics } from './request-metrics.js';
import type { SlowOp } from './slow-ops.js';
import type { ChainMemoStats } from '../../native/index.js';

export interface DaemonStats {
  version: string;
  uptimeSeconds: number;
  socket: string;
  connections: number;
  leases: number;
  memory: HostMemoryInfo;
  host: ReturnType<HostTier['stats']>;
  writeBehind: ReturnType<ChunkManager['writeBehindStats']>;
  /** The disk tier (local_disk), or null when not configured. */
  disk: DiskSyncStats | null;
  counters: Record<string, number>;
  /** kvtier_lookup_miss_chunks_total by reason (counters.ts MISS_REASONS says what each counts). */
  misses: Record<MissReason, number>;
  /** Host chunks held by `kvtier pin`, and pin_budget_bytes. */
  pins: ReturnType<ChunkManager['pinStats']>;
  /** The daemon-wide prefetch budget (prefetch_budget_mb) and what every Lookup's fetches hold of it. */
  prefetch: ReturnType<ChunkManager['prefetchStats']>;
  /** Of the last 256 lookups. */
  lookupLatencyUs: { p50: number; p99: number; max: number };
  /** The slowest of the last 256 lookups, stores and retrieves each, slowest first. */
  slowOps: SlowOp[];
  registeredWorkers: number;
  /** Requests clients kept away from kvtier (Bypass), by reason. */
  bypassed: Record<string, number>;
  /** Connections the daemon closed itself: broken framing, idle past idle_connection_timeout_ms. */
  closedConnections: { badFrame: number; idle: number };
  /** Prompt tokens looked up and found per tier, and tokens handed back by Retrieve. */
  tokens: { lookup: number; hostHit: number; valkeyLookup: number; valkeyHit: number; prefillSaved: number };
  remote: { configured: boolean; available: boolean; detail: Record<string, unknown> | null; pace: ReturnType<ChunkManager['remotePace']> };
  native: { loaded: boolean; detail: string };
  /** The native chain's memo of hash steps (chain_memo_mb); null: the JavaScript chain, no memo. */
  chainMemo: ChainMemoStats | null;
}

export interface StatsSources {
  version: string;
  socket: string;
  /** Unix ms the daemon started. */
  started: number;
  manager: ChunkManager;
  memory: HostMemory;
  requests: RequestMetrics;
  connections(): number;
  closedConnections(): { badFrame: number; idle: number };
  native: { loaded: boolean; detail: string };
  chainMemo: (() => ChainMemoStats) | null;
}

export function daemonStats(src: StatsSources): DaemonStats {
  const m = src.manager;
  const c = m.counters;
  const r = src.requests;
  const remote = remoteView(m.remote);
  return {
    version: src.version,
    uptimeSeconds: Math.round((Date.now() - src.started) / 1000),
    socket: src.socket,
    connections: src.connections(),
    leases: m.leaseCount,
    memory: src.memory.info(),
    host: m.host.stats(),
    writeBehind: m.writeBehindStats(),
    disk: m.disk?.stats() ?? null,
    counters: {
      lookups: c.lookups, lookupChunks: c.lookupChunks, hitChunks: c.hitChunks, hostHitChunks: c.hostHitChunks, diskHitChunks: c.diskHitChunks,
      remoteHitChunks: c.remoteHitChunks, hitTokens: c.hitTokens, storedChunks: c.storedChunks, storedBytes: c.storedBytes,
      presentChunks: c.presentChunks, skippedChunks: c.skippedChunks, retrievedChunks: c.retrievedChunks,
      retrievedBytes: c.retrievedBytes, failedRetrieveChunks: c.failedRetrieveChunks, remoteFetchedChunks: c.remoteFetchedChunks,
      remoteFetchMisses: c.remoteFetchMisses, remoteSkippedDown: c.remoteSkippedDown, remoteSlowSkippedChunks: c.remoteSlowSkippedChunks, remoteSlowSkippedGets: c.remoteSlowSkippedGets,
    },
    misses: missReasons(m),
    pins: m.pinStats(),
    prefetch: m.prefetchStats(),
    lookupLatencyUs: r.ring.latencyUs(LOOKUP),
    slowOps: r.ring.slowest(5),
    registeredWorkers: r.registeredWorkers,
    bypassed: Object.fromEntries(r.bypasses),
    closedConnections: { ...src.closedConnections() },
    tokens: {
      lookup: c.lookupTokens, hostHit: c.hostHitTokens, valkeyLookup: c.remoteLookupTokens,
      valkeyHit: c.remoteHitTokens, prefillSaved: c.prefillTokensSaved,
    },
    remote: { configured: remote.configured, available: remote.available, detail: remote.detail(), pace: m.remotePace() },
    native: src.native,
    chainMemo: src.chainMemo?.() ?? null,
  };
}
