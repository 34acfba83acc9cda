/**
 * What happened to chunks, counted where it happens: the manager bumps these
 * plain numbers on its paths and src/metrics reads them for Prometheus and
 * `kvtier stats`, so the hot path never calls into a metrics library.
 *
 * Each figure is kept once. Request timing, errors and slow ops are not
 * here: the protocol dispatcher reports those to its observer. Figures that
 * follow from others (Valkey hits = hits - host hits) are getters, not a
 * second count that could drift.
 */
import type { HostEntry } from '../tiers/host-tier.js';

/**
 * Why a chunk was not served (kvtier_lookup_miss_chunks_total{reason}).
 * Lookup-time reasons count once per Lookup that stopped short of its
 * prompt, for the first chunk it could not offer (the chunks after it are
 * no longer a prefix and are not looked up): not_stored, evicted (the host
 * tier remembers evicting it and no remote holds it), valkey_down (Valkey is
 * configured but down, or its EXISTS failed), slow_skip (held only by Valkey,
 * not offered as slower than recompute). Retrieve-time reasons count each
 * chunk: lease_expired (chunks a Retrieve asked of an expired lease) and
 * verification_failed (Valkey values that failed verification, read from
 * the Valkey tier's own counters, not counted twice here).
 */
export const MISS_REASONS = ['not_stored', 'evicted', 'verification_failed', 'valkey_down', 'slow_skip', 'lease_expired'] as const;
export type MissReason = (typeof MISS_REASONS)[number];

export class ManagerCounters {
  lookups = 0;
  lookupChunks = 0;
  hitChunks = 0;
  hostHitChunks = 0;
  hitTokens = 0;
  /** Prompt tokens of token-addressed lookups. */
  lookupTokens = 0;
  /** The part of hitTokens the host tier held. */
  hostHitTokens = 0;
  /** Hit chunks (and their tokens) found on the disk tier, not in host RAM. */
  diskHitChunks = 0;
  diskHitTokens = 0;
  /** Looked-up tokens the host and disk tiers did not hold, counted only when the remote tier was asked. */
  remoteLookupTokens = 0;
  storedChunks = 0;
  storedBytes = 0;
  presentChunks = 0;
  skippedChunks = 0;
  retrievedChunks = 0;
  retrievedBytes = 0;
  failedRetrieveChunks = 0;
  remoteFetchedChunks = 0;
  remoteFetchMisses = 0;
  remoteSkippedDown = 0;
  /** Valkey-only chunks a Lookup did not report because recomputing them is faster (recompute_tokens_per_s). */
  remoteSlowSkippedChunks = 0;
  /** Key-addressed Gets not sent to the remote tier for the same reason (whether it held the chunk is not asked). */
  remoteSlowSkippedGets = 0;
  /** Miss reasons counted by the manager (verification_failed comes from the Valkey tier). */
  readonly misses = { not_stored: 0, evicted: 0, valkey_down: 0, slow_skip: 0, lease_expired: 0 } satisfies Partial<Record<MissReason, number>>;
  /**
   * Tokens whose KV went back to a worker: each loaded chunk's real tokens
   * (a partial last chunk counts what it covers; a key-addressed chunk,
   * chunk_size), less the blocks a block-form Retrieve was told to skip.
   */
  prefillTokensSaved = 0;
  readonly #chunkSize: number;

  constructor(chunkSize: number) {
    this.#chunkSize = chunkSize;
  }

  get remoteHitChunks(): number {
    return this.hitChunks - this.hostHitChunks - this.diskHitChunks;
  }

  get remoteHitTokens(): number {
    return this.hitTokens - this.hostHitTokens - this.diskHitTokens;
  }

  get chunkSize(): number {
    return this.#chunkSize;
  }

  /**
   * `askedTokens` is 0 for key-addressed lookups. A saved partial last chunk
   * is shorter than chunk_size, so the host share is capped by the hit.
   * `disk`: hit chunks found on the disk tier, which follow the host ones.
   */
  recordLookup(chunks: number, hit: number, host: number, tokens: number, askedTokens: number, remoteAsked: boolean, disk = 0): void {
    this.lookups++;
    this.lookupChunks += chunks;
    this.hitChunks += hit;
    this.hostHitChunks += host;
    this.diskHitChunks += disk;
    this.hitTokens += tokens;
    const hostTokens = Math.min(tokens, host * this.#chunkSize);
    const localTokens = Math.min(tokens, (host + disk) * this.#chunkSize);
    this.lookupTokens += askedTokens;
    this.hostHitTokens += hostTokens;
    this.diskHitTokens += localTokens - hostTokens;
    if (remoteAsked) this.remoteLookupTokens += askedTokens - localTokens;
  }

  recordStore(stored: number, bytes: number, present: number, skipped: number): void {
    this.storedChunks += stored;
    this.storedBytes += bytes;
    this.presentChunks += present;
    this.skippedChunks += skipped;
  }

  /** Inline form: every non-null entry was handed back; `tokens[j]` is entry j's tokens (0: a key, chunk_size). */
  recordRetrieve(entries: Array<HostEntry | null>, tokens: (j: number) => number): void {
    for (let j = 0; j < entries.length; j++) {
      const e = entries[j];
      if (e === null) this.failedRetrieveChunks++;
      else {
        this.retrievedChunks++;
        this.retrievedBytes += e.slab.buf.length;
        this.prefillTokensSaved += tokens(j) || this.#chunkSize;
      }
    }
  }

  /** Block form: a chunk can also fail in the scatter, so the manager says how many landed and their tokens. */
  recordRetrieveCounts(loaded: number, bytes: number, failed: number, tokens: number): void {
    this.retrievedChunks += loaded;
    this.retrievedBytes += bytes;
    this.failedRetrieveChunks += failed;
    this.prefillTokensSaved += tokens;
  }
}
