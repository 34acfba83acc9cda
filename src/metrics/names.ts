/**
 * Every metric kvtier exports, in one table (STYLE item 13): name, type,
 * labels and help text. Nothing else in the code base spells a metric name;
 * docs/metrics.md documents this table and test/metrics checks that a
 * scrape shows every entry.
 *
 * Conventions (prometheus.io/docs/practices/naming): `kvtier_` prefix,
 * counters end in `_total`, sizes in `_bytes`, durations in `_seconds`.
 * `tier` is `host` or `valkey`, as everywhere else in kvtier.
 */

export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface MetricDef {
  readonly name: string;
  readonly type: MetricType;
  readonly labels: readonly string[];
  readonly help: string;
}

const def = (name: string, type: MetricType, labels: readonly string[], help: string): MetricDef => ({ name, type, labels, help });

export const METRICS = {
  lookups: def('kvtier_lookups_total', 'counter', [], 'Lookup requests answered.'),
  lookupTokens: def('kvtier_lookup_tokens_total', 'counter', ['tier'], 'Prompt tokens looked up in the tier (valkey: those the host tier did not hold, when Valkey is configured).'),
  hitTokens: def('kvtier_hit_tokens_total', 'counter', ['tier'], 'Looked-up tokens found in the tier, as part of the longest cached prefix.'),
  missTokens: def('kvtier_miss_tokens_total', 'counter', ['tier'], 'Looked-up tokens the tier could not serve (lookup minus hit).'),
  missChunks: def('kvtier_lookup_miss_chunks_total', 'counter', ['reason'], 'Chunks not served, by reason: not_stored, evicted, valkey_down, slow_skip (once per Lookup, for the first chunk it could not offer), lease_expired (chunks a Retrieve asked of an expired lease), verification_failed (Valkey values that failed verification).'),
  prefillTokensSaved: def('kvtier_prefill_tokens_saved_total', 'counter', [], 'Tokens whose KV a Retrieve loaded into a worker (a partial last chunk counts its real tokens; skipped blocks are not counted): prefill the engine did not compute.'),
  storedChunks: def('kvtier_stored_chunks_total', 'counter', ['tier'], 'Chunks written into the tier.'),
  storedBytes: def('kvtier_stored_bytes_total', 'counter', ['tier'], 'Bytes written into the tier (valkey: payload bytes after serde).'),
  retrievedChunks: def('kvtier_retrieved_chunks_total', 'counter', ['tier'], 'Chunks read out of the tier (host: to workers; valkey: into the host tier).'),
  retrievedBytes: def('kvtier_retrieved_bytes_total', 'counter', ['tier'], 'Bytes read out of the tier.'),
  failedRetrieveChunks: def('kvtier_retrieve_failed_chunks_total', 'counter', [], 'Leased chunks that could not be handed back (the worker recomputes them).'),
  skippedStoreChunks: def('kvtier_store_skipped_chunks_total', 'counter', [], 'Chunks not stored because the host pool was full of pinned chunks, or still warming with its ready part full.'),
  requestErrors: def('kvtier_request_errors_total', 'counter', ['op'], 'Lookup/store/retrieve requests that ended in an error frame.'),
  bypassedRequests: def('kvtier_bypassed_requests_total', 'counter', ['reason'], 'Requests a client kept away from kvtier because it cannot key them (Bypass), by reason.'),
  lookupSeconds: def('kvtier_lookup_duration_seconds', 'histogram', [], 'Time the daemon spent on a Lookup (hashing, host index, Valkey EXISTS, leasing).'),
  storeSeconds: def('kvtier_store_duration_seconds', 'histogram', ['form'], 'Time from a Store request to StoreCopied (the copy into the host pool); form is inline or blocks.'),
  retrieveSeconds: def('kvtier_retrieve_duration_seconds', 'histogram', ['form'], 'Time from a Retrieve request to RetrieveDone, waiting for Valkey prefetches included.'),
  poolCapacityBytes: def('kvtier_host_pool_capacity_bytes', 'gauge', [], 'Size of the host pool (max_local_cpu_size).'),
  poolUsedBytes: def('kvtier_host_pool_used_bytes', 'gauge', [], 'Bytes of the host pool allocated to chunks.'),
  poolPageLocked: def('kvtier_host_pool_page_locked', 'gauge', [], '1 when the pool is page-locked (cudaHostAlloc or mlock), 0 otherwise.'),
  hostChunks: def('kvtier_host_chunks', 'gauge', [], 'Chunks held in the host tier.'),
  pinnedBytes: def('kvtier_host_pinned_bytes', 'gauge', [], 'Bytes of host chunks pinned by leases, copies or writes in flight (not evictable).'),
  leases: def('kvtier_leases', 'gauge', [], 'Leases open (looked-up prefixes not yet released or expired).'),
  evictions: def('kvtier_host_evictions_total', 'counter', [], 'Host chunks evicted (LRU) to make room.'),
  evictedBytes: def('kvtier_host_evicted_bytes_total', 'counter', [], 'Bytes of host chunks evicted.'),
  prefetchChargedBytes: def('kvtier_prefetch_charged_bytes', 'gauge', [], "Bytes of every Lookup's disk and Valkey fetches in flight or landed and not yet retrieved (bounded by prefetch_budget_mb)."),
  chainMemoHits: def('kvtier_chain_memo_hits_total', 'counter', [], 'Chunk steps of the prefix-hash chain answered from the chain memo (chain_memo_mb) instead of SHA-256.'),
  chainHashed: def('kvtier_chain_hashed_chunks_total', 'counter', [], 'Chunk steps of the prefix-hash chain the native chain computed by SHA-256 (memo misses, or every step with chain_memo_mb 0); 0 with the JavaScript chain.'),
  prefetchWaits: def('kvtier_prefetch_budget_waits_total', 'counter', [], 'Times a Lookup\'s fetches waited for the daemon-wide prefetch budget.'),
  writeBehindQueueBytes: def('kvtier_write_behind_queue_bytes', 'gauge', [], 'Bytes queued towards Valkey, not yet sent.'),
  writeBehindQueueJobs: def('kvtier_write_behind_queue_chunks', 'gauge', [], 'Chunks queued towards Valkey, not yet sent.'),
  writeBehindInFlight: def('kvtier_write_behind_in_flight_chunks', 'gauge', [], 'Chunk writes to Valkey in flight.'),
  writeBehindWritten: def('kvtier_write_behind_written_total', 'counter', [], 'Chunks the write-behind queue wrote to Valkey.'),
  writeBehindFailed: def('kvtier_write_behind_failed_total', 'counter', [], 'Chunk writes to Valkey that failed.'),
  writeBehindDropped: def('kvtier_write_behind_dropped_total', 'counter', [], 'Chunks not queued for Valkey because the queue was full (write_behind_queue_bytes).'),
  diskConfigured: def('kvtier_disk_configured', 'gauge', [], '1 when local_disk is set.'),
  diskChunks: def('kvtier_disk_chunks', 'gauge', [], 'Chunks held in the disk tier.'),
  diskUsedBytes: def('kvtier_disk_used_bytes', 'gauge', [], 'Bytes of disk tier files (headers and padding included), what max_local_disk_size bounds.'),
  diskCapacityBytes: def('kvtier_disk_capacity_bytes', 'gauge', [], 'Size of the disk tier (max_local_disk_size).'),
  diskWrittenChunks: def('kvtier_disk_written_chunks_total', 'counter', [], 'Chunks written to the disk tier.'),
  diskWrittenBytes: def('kvtier_disk_written_bytes_total', 'counter', [], 'Payload bytes written to the disk tier.'),
  diskHits: def('kvtier_disk_hits_total', 'counter', [], 'Chunks read from the disk tier and verified (each one promoted to the host tier).'),
  diskReadBytes: def('kvtier_disk_read_bytes_total', 'counter', [], 'Payload bytes read from the disk tier and verified.'),
  diskEvictions: def('kvtier_disk_evictions_total', 'counter', [], 'Disk tier chunks deleted (LRU) to stay under max_local_disk_size.'),
  diskEvictedBytes: def('kvtier_disk_evicted_bytes_total', 'counter', [], 'Payload bytes of disk tier chunks evicted.'),
  diskSkippedStores: def('kvtier_disk_skipped_stores_total', 'counter', ['reason'], 'Chunks not written to the disk tier: full (bigger than the tier, or ENOSPC), io_error (EIO and others), queue_full (write_behind_queue_bytes of disk writes queued).'),
  diskVerificationFailures: def('kvtier_disk_verification_failures_total', 'counter', [], 'Disk tier files that failed verification (torn, truncated, overwritten, other namespace): served as misses and deleted.'),
  valkeyUp: def('kvtier_valkey_up', 'gauge', [], '1 when Valkey is configured and reachable, 0 when configured and down or not configured.'),
  valkeyConfigured: def('kvtier_valkey_configured', 'gauge', [], '1 when remote_url is set.'),
  valkeyReconnects: def('kvtier_valkey_reconnects_total', 'counter', [], 'Times the Valkey connection came back after being lost or absent.'),
  valkeyErrors: def('kvtier_valkey_errors_total', 'counter', [], 'Valkey requests that failed (timeouts, connection loss, server errors).'),
  valkeyVerificationFailures: def('kvtier_valkey_verification_failures_total', 'counter', ['reason'], 'Valkey values that failed verification and were served as misses: corrupt (magic, header, namespace, length, checksum) or incomplete (manifest whose segments were gone).'),
  valkeySlowSkipped: def('kvtier_valkey_slow_skipped_chunks_total', 'counter', [], 'Chunks found only in Valkey that a Lookup did not offer because recomputing them is faster (recompute_tokens_per_s).'),
  valkeyReadRate: def('kvtier_valkey_read_bytes_per_second', 'gauge', [], 'Smoothed Valkey read rate lookups saw (bytes of their Valkey chunks over the time until the last landed); 0 before a sample or 30 s after the last.'),
  valkeySkippedStores: def('kvtier_valkey_skipped_stores_total', 'counter', [], 'Chunk writes Valkey did not take (down, out of memory, failed request) plus writes skipped while it was down.'),
  connectedClients: def('kvtier_connected_clients', 'gauge', [], 'Open connections on the Unix socket (workers, schedulers, CLI).'),
  closedConnections: def('kvtier_connections_closed_total', 'counter', ['reason'], 'Connections the daemon closed itself: bad_frame (the byte stream could not be split into frames) or idle (no I/O for idle_connection_timeout_ms, nothing in flight, no registered KV).'),
  registeredWorkers: def('kvtier_registered_workers', 'gauge', [], 'Connections with registered KV memory (workers using block-form Store/Retrieve).'),
  up: def('kvtier_up', 'gauge', ['version'], 'Always 1 while the daemon serves; the version label says which build.'),
} as const satisfies Record<string, MetricDef>;

export type MetricKey = keyof typeof METRICS;

export const TIERS = ['host', 'valkey'] as const;

/** Histogram buckets, in seconds. */
export const LOOKUP_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
export const TRANSFER_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
