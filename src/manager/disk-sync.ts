/**
 * The manager's traffic with the disk tier, both directions:
 *
 *   write  host slab ─► [ bounded queue ] ─► disk file   every fresh chunk, in the background;
 *                                                         the entry stays pinned until written
 *   fetch  disk file ─► host slab ─► host index           a Lookup's prefetch or a Get: the chunk
 *                                                         is promoted to the host tier, one read per key
 *
 * Host eviction never touches the disk copy, so a chunk pushed out of RAM
 * is still a disk hit. A full queue drops the disk write (counted), never
 * the store; a failed or unverifiable read is a miss for the caller, who may
 * still try Valkey.
 */
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { ChunkId } from '../tiers/chunk-id.js';
import type { DiskTier, DiskTierStats } from '../tiers/disk-tier.js';
import type { HostEntry, HostTier } from '../tiers/host-tier.js';
import { WriteBehindQueue, type WriteBehindStats } from './write-behind.js';

export interface DiskSyncOptions {
  host: HostTier;
  disk: DiskTier;
  queueBytes: number;
  concurrency: number;
  logger: Logger;
}

export interface DiskSyncStats extends DiskTierStats {
  queue: WriteBehindStats;
  /** Chunks read from disk into the host tier (promoted). */
  promoted: number;
  promotedBytes: number;
  /** Disk hits that found no host slab free (every one pinned): a miss. */
  promoteSkippedFull: number;
}

export class DiskSync {
  readonly disk: DiskTier;
  readonly #o: DiskSyncOptions;
  readonly #queue: WriteBehindQueue;
  readonly #fetches = new Map<string, Promise<HostEntry | null>>();
  #promoted = 0;
  #promotedBytes = 0;
  #promoteSkippedFull = 0;

  constructor(opts: DiskSyncOptions) {
    this.#o = opts;
    this.disk = opts.disk;
    this.#queue = new WriteBehindQueue(opts.queueBytes, opts.concurrency, opts.logger);
  }

  /** By host key. */
  has(hostKey: string): boolean {
    return this.disk.has(hostKey);
  }

  stats(): DiskSyncStats {
    return { ...this.disk.stats(), queue: this.#queue.stats(), promoted: this.#promoted, promotedBytes: this.#promotedBytes, promoteSkippedFull: this.#promoteSkippedFull };
  }

  /** Queues fresh host entries for the disk; each is pinned until its file is written or the write failed. */
  write(entries: readonly HostEntry[]): void {
    const { host } = this.#o;
    for (const entry of entries) {
      if (this.disk.has(entry.id.hostKey)) continue;
      host.pinEntry(entry);
      const accepted = this.#queue.enqueue({
        bytes: entry.slab.buf.length,
        run: () => this.disk.write(entry.id, entry.slab.buf),
        done: () => host.unpin(entry),
      });
      if (!accepted) host.unpin(entry);
    }
  }

  /** Disk → host slab → host index, deduplicated per key; null on a miss or any failure. */
  fetch(id: ChunkId): Promise<HostEntry | null> {
    const hostKey = id.hostKey;
    const inflight = this.#fetches.get(hostKey);
    if (inflight !== undefined) return inflight;
    const length = this.disk.lengthOf(hostKey);
    if (length === undefined) return Promise.resolve(null);
    const { host } = this.#o;
    const p = (async () => {
      const slab = host.reserve(length);
      if (slab === null) {
        this.#promoteSkippedFull++;
        return null;
      }
      let ok = false;
      try {
        ok = await this.disk.readInto(id, slab.buf);
      } catch (e) {
        this.#o.logger.warn('read from the disk tier failed', { error: errorMessage(e) });
      }
      if (!ok) {
        slab.release();
        return null;
      }
      this.#promoted++;
      this.#promotedBytes += length;
      return host.insert(id, slab);
    })().finally(() => this.#fetches.delete(hostKey));
    this.#fetches.set(hostKey, p);
    return p;
  }

  remove(hostKey: string): boolean {
    return this.disk.remove(hostKey);
  }

  removeNamespace(namespaceId: string): number {
    return this.disk.removeNamespace(namespaceId);
  }

  /** Waits for queued writes and reads in flight (shutdown, tests). */
  async drain(): Promise<void> {
    await this.#queue.idle();
    await Promise.allSettled([...this.#fetches.values()]);
  }

  async close(): Promise<void> {
    await this.drain();
    await this.disk.close();
  }
}
