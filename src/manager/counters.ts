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

  /** Tokens whose KV went back to a worker: by definition chunks handed back x chunk_size. */
  get prefillTokensSaved(): number {
    return this.retrievedChunks * this.#chunkSize;
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

  /** Inline form: every non-null entry was handed back. */
  recordRetrieve(entries: Array<HostEntry | null>): void {
    for (const e of entries) {
      if (e === null) this.failedRetrieveChunks++;
      else {
        this.retrievedChunks++;
        this.retrievedBytes += e.slab.buf.length;
      }
    }
  }

  /** Block form: a chunk can also fail in the scatter, so the manager says how many landed. */
  recordRetrieveCounts(loaded: number, bytes: number, failed: number): void {
    this.retrievedChunks += loaded;
    this.retrievedBytes += bytes;
    this.failedRetrieveChunks += failed;
  }
}
