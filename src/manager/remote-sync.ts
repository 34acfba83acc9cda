/**
 * The manager's traffic with the remote tier, both directions:
 *
 *   fetch  remote ─► host slab   prefetch of lookup hits, one in flight per key
 *   write  host slab ─► remote   write-behind of fresh chunks, each pinned until written
 *
 * A remote that says it is down is not asked at all: fetches are misses and
 * writes are reported as failed (the host copy stays).
 */
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Slab } from '../tiers/host-memory.js';
import type { HostEntry, HostTier } from '../tiers/host-tier.js';
import type { ChunkId } from '../tiers/chunk-id.js';
import type { RemoteTier } from '../tiers/tier.js';
import type { ManagerCounters } from './counters.js';
import { WriteBehindQueue, type WriteBehindStats } from './write-behind.js';

export interface RemoteSyncOptions {
  host: HostTier;
  remote: RemoteTier | null;
  counters: ManagerCounters;
  /** false: a host copy lives only until its write-behind is done (local_cpu: false). */
  localCpu: boolean;
  writeBehindQueueBytes: number;
  writeBehindConcurrency: number;
  logger: Logger;
}

export class RemoteSync {
  readonly #o: RemoteSyncOptions;
  readonly #writeBehind: WriteBehindQueue;
  readonly #fetches = new Map<string, Promise<HostEntry | null>>();

  constructor(opts: RemoteSyncOptions) {
    this.#o = opts;
    this.#writeBehind = new WriteBehindQueue(opts.writeBehindQueueBytes, opts.writeBehindConcurrency, opts.logger);
  }

  /** The remote tier when it is configured and not known to be down. */
  usable(): RemoteTier | null {
    const r = this.#o.remote;
    return r !== null && r.available !== false ? r : null;
  }

  writeBehindStats(): WriteBehindStats {
    return this.#writeBehind.stats();
  }

  /** Remote → host, deduplicated per chunk. Resolves to null on any failure. */
  fetch(id: ChunkId): Promise<HostEntry | null> {
    const inflight = this.#fetches.get(id.hostKey);
    if (inflight !== undefined) return inflight;
    const remote = this.usable();
    if (remote === null) return Promise.resolve(null);
    const { host, counters } = this.#o;
    const p = (async () => {
      try {
        let slab: Slab | null;
        if (remote.getInto !== undefined) {
          slab = await remote.getInto(id, (bytes) => host.reserve(bytes));
        } else {
          const payload = await remote.get(id);
          slab = payload === null ? null : host.reserve(payload.length);
          if (slab !== null) payload!.copy(slab.buf);
        }
        if (slab === null) {
          counters.remoteFetchMisses++;
          return null;
        }
        counters.remoteFetchedChunks++;
        return host.insert(id, slab);
      } catch (e) {
        this.#o.logger.warn('prefetch from the remote tier failed', { error: errorMessage(e) });
        return null;
      } finally {
        this.#fetches.delete(id.hostKey);
      }
    })();
    this.#fetches.set(id.hostKey, p);
    return p;
  }

  /** Writes fresh host entries to the remote tier; resolves once every one is written or failed. */
  write(entries: HostEntry[]): Promise<{ committed: number; failed: number }> {
    const { host, counters } = this.#o;
    if (this.#o.remote === null) return Promise.resolve({ committed: entries.length, failed: 0 });
    const remote = this.usable();
    if (remote === null) {
      counters.remoteSkippedDown += entries.length;
      return Promise.resolve({ committed: 0, failed: entries.length });
    }
    let committed = 0;
    let failed = 0;
    return new Promise((resolve) => {
      let left = entries.length;
      if (left === 0) resolve({ committed, failed });
      const finish = (entry: HostEntry, ok: boolean): void => {
        if (ok) committed++;
        else failed++;
        host.unpin(entry);
        if (!this.#o.localCpu) host.remove(entry.id);
        if (--left === 0) resolve({ committed, failed });
      };
      for (const entry of entries) {
        host.pinEntry(entry);
        const accepted = this.#writeBehind.enqueue({
          bytes: entry.slab.buf.length,
          run: () => remote.put(entry.id, entry.slab.buf),
          done: (ok) => finish(entry, ok),
        });
        if (!accepted) finish(entry, false);
      }
    });
  }

  /** Waits for queued writes and fetches in flight (shutdown, tests). */
  async drain(): Promise<void> {
    await this.#writeBehind.idle();
    await Promise.allSettled([...this.#fetches.values()]);
  }
}
