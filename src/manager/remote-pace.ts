/**
 * Whether loading chunks from the remote tier beats recomputing them: a
 * remote tier slower than prefill makes time-to-first-token worse, not
 * better, and a Lookup must not offer it.
 *
 *   load time      = bytes per token / remote read rate
 *   recompute time = 1 / recompute_tokens_per_s          (per token)
 *
 * The read rate is what lookups experienced: the bytes of one lookup's
 * remote chunks over the time from that lookup to the last of them landing
 * in the host tier, smoothed (EWMA); a key-addressed Get's remote read is a
 * sample too. Bytes per token are learned per namespace from the chunks this
 * daemon handles. A key-addressed chunk (SGLang's page) carries no token
 * count, so it is taken to cover the namespace's block_size tokens, which
 * the SGLang backend sets to its page size (chunkTokens). Without a recompute speed
 * in the config, a rate or a namespace's size, remote hits are offered as
 * before. An estimate older than PROBE_AFTER_MS is dropped, so a remote that
 * got faster gets tried again.
 */

/** Tokens chunk i covers, for the pace: its own count, or for a key-addressed chunk (0) the namespace's block_size. */
export function chunkTokens(tokens: number, blockSize: number): number {
  return tokens > 0 ? tokens : blockSize;
}

/** A read-rate estimate expires after this long without a new sample. */
export const PROBE_AFTER_MS = 30_000;
const ALPHA = 0.3;
const MAX_NAMESPACES = 1024;

export interface RemotePaceSnapshot {
  recomputeTokensPerS: number | null;
  /** Smoothed remote read rate, bytes per second; null before a sample or after expiry. */
  readBytesPerS: number | null;
}

export class RemotePace {
  readonly recomputeTokensPerS: number | null;
  readonly #now: () => number;
  #rate: number | null = null;
  #sampledAt = 0;
  readonly #bytesPerToken = new Map<string, number>();

  constructor(recomputeTokensPerS: number | null, now: () => number = () => performance.now()) {
    this.recomputeTokensPerS = recomputeTokensPerS;
    this.#now = now;
  }

  /** One lookup's remote chunks: `bytes` arrived `ms` after the lookup. */
  recordRead(bytes: number, ms: number): void {
    if (!(bytes > 0 && ms > 0)) return;
    const sample = (bytes * 1000) / ms;
    const current = this.#current();
    this.#rate = current === null ? sample : current + ALPHA * (sample - current);
    this.#sampledAt = this.#now();
  }

  /** A chunk of `tokens` tokens took `bytes` bytes in this namespace. */
  learnChunk(namespaceId: string, bytes: number, tokens: number): void {
    if (!(bytes > 0 && tokens > 0) || this.#bytesPerToken.has(namespaceId)) return;
    if (this.#bytesPerToken.size >= MAX_NAMESPACES) this.#bytesPerToken.clear();
    this.#bytesPerToken.set(namespaceId, bytes / tokens);
  }

  /** The bytes of a chunk of `tokens` tokens in this namespace, as learned; 0 when not known yet. */
  chunkBytes(namespaceId: string, tokens: number): number {
    const bpt = this.#bytesPerToken.get(namespaceId);
    return bpt === undefined ? 0 : Math.round(bpt * tokens);
  }

  /** False only when all three are known and recomputing is the faster way. */
  pays(namespaceId: string): boolean {
    const tps = this.recomputeTokensPerS;
    const rate = this.#current();
    const bpt = this.#bytesPerToken.get(namespaceId);
    if (tps === null || rate === null || bpt === undefined) return true;
    return bpt / rate < 1 / tps;
  }

  snapshot(): RemotePaceSnapshot {
    return { recomputeTokensPerS: this.recomputeTokensPerS, readBytesPerS: this.#current() };
  }

  #current(): number | null {
    if (this.#rate === null || this.#now() - this.#sampledAt > PROBE_AFTER_MS) return null;
    return this.#rate;
  }
}
