/**
 * Plain counters the manager bumps on its paths; src/metrics reads them (and
 * `kvtier stats`), so the hot path never calls into a metrics library.
 */
import type { HostEntry } from '../tiers/host-tier.js';

export class ManagerCounters {
  lookups = 0;
  lookupChunks = 0;
  hitChunks = 0;
  hostHitChunks = 0;
  remoteHitChunks = 0;
  hitTokens = 0;
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
  /** Last lookups' latencies in ns, a small ring for `kvtier stats`. */
  readonly lookupNs = new Float64Array(256);
  #lookupSlot = 0;

  recordLookup(chunks: number, hit: number, host: number, tokens: number, ns: bigint): void {
    this.lookups++;
    this.lookupChunks += chunks;
    this.hitChunks += hit;
    this.hostHitChunks += host;
    this.remoteHitChunks += hit - host;
    this.hitTokens += tokens;
    this.lookupNs[this.#lookupSlot++ & 255] = Number(ns);
  }

  recordStore(stored: number, bytes: number, present: number, skipped: number): void {
    this.storedChunks += stored;
    this.storedBytes += bytes;
    this.presentChunks += present;
    this.skippedChunks += skipped;
  }

  recordRetrieve(entries: Array<HostEntry | null>): void {
    for (const e of entries) {
      if (e === null) this.failedRetrieveChunks++;
      else {
        this.retrievedChunks++;
        this.retrievedBytes += e.slab.buf.length;
      }
    }
  }
}
