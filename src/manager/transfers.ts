/**
 * Transfers: chunk bytes between a worker and the host tier.
 *
 *   Store    ─ reserve host slabs, fill them (inline copy or one batched
 *              native gather), index them, answer "copied"; queue them for
 *              the disk tier (background, never awaited); the write-behind
 *              to the remote tier answers "committed" later.
 *   Retrieve ─ wait for a lease's prefetches, copy out (inline) or scatter
 *              into the worker's blocks; a chunk that could not be had is
 *              reported as failed so the worker recomputes it. Never wrong
 *              bytes: the host tier only holds what a worker gave us or the
 *              remote tier verified. The block form scatters chunks as their
 *              prefetches land, in batches of whatever is ready, so a Valkey
 *              hit costs about its fetch time, not fetch and then copy:
 *
 *                fetch  ██████████████████████████
 *                copy     ██ ████ ██████ ████████ ██   (one batch at a time)
 *
 *              Each fetched chunk copied out (or failed) is consumed: its
 *              lease pin goes and the prefetch window starts the next fetch
 *              (prefetch-window.ts), so a context larger than the pool loads.
 * Every slab a copy reads or writes is pinned for the duration of the copy,
 * independently of the lease, so an expiring lease cannot free it mid-copy.
 */
import { SKIP_BLOCK } from '../../proto/constants.js';
import type { Namespace } from '../chunking/namespace.js';
import { BadBlockIdError, BadRequestError, LeaseNotFoundError, errorMessage } from '../errors.js';
import type { ChunkId } from '../tiers/chunk-id.js';
import type { Slab } from '../tiers/host-memory.js';
import type { HostEntry } from '../tiers/host-tier.js';
import { resolveAddress, type ChunkAddress } from './address.js';
import { leasedEntry, leasedPending, type Lease } from './leases.js';
import type { ManagerParts } from './parts.js';

/** Copies between a worker's registered KV blocks and chunk buffers (native/). */
export interface BlockCopier {
  readonly chunkBytes: number;
  readonly blocksPerChunk: number;
  gather(jobs: Array<{ blockIds: Uint32Array; dst: Buffer }>): Promise<void>;
  scatter(jobs: Array<{ blockIds: Uint32Array; src: Buffer }>): Promise<void>;
}

export type StoreSource =
  | { kind: 'inline'; chunks: Buffer[] }
  | { kind: 'blocks'; blockIds: Uint32Array; copier: BlockCopier };

export interface StoreCopiedResult {
  stored: number;
  present: number;
  skipped: number;
  committed: Promise<{ committed: number; failed: number }>;
}

export interface BlockRetrieveResult {
  loaded: number;
  failed: number;
  failedBlocks: Uint32Array;
}

export async function store(p: ManagerParts, ns: Namespace, address: ChunkAddress, source: StoreSource, skipChunks: number): Promise<StoreCopiedResult> {
  const resolved = resolveAddress(p, ns, address);
  let count = resolved.count;
  if (source.kind === 'inline') {
    count = Math.min(count, skipChunks + source.chunks.length);
  } else {
    const per = source.copier.blocksPerChunk;
    // Block form moves whole chunks only: a partial chunk has no fixed byte size.
    // Opaque keys name one whole chunk each.
    let full = 'keys' in address ? count : 0;
    while (full < count && resolved.tokensOf(full) === p.chunkSize) full++;
    count = Math.min(full, Math.floor(source.blockIds.length / per));
  }
  let present = 0;
  let skipped = 0;
  const fresh: Array<{ index: number; id: ChunkId; slab: Slab }> = [];
  for (let i = skipChunks; i < count; i++) {
    const id = resolved.ids[i];
    if (p.host.has(id)) {
      present++;
      continue;
    }
    const bytes = source.kind === 'inline' ? source.chunks[i - skipChunks].length : source.copier.chunkBytes;
    const slab = p.host.reserve(bytes);
    if (slab === null) {
      skipped++;
      continue;
    }
    fresh.push({ index: i, id, slab });
  }
  try {
    if (source.kind === 'inline') {
      for (const f of fresh) source.chunks[f.index - skipChunks].copy(f.slab.buf);
    } else if (fresh.length > 0) {
      const per = source.copier.blocksPerChunk;
      await source.copier.gather(fresh.map((f) => ({ blockIds: source.blockIds.subarray(f.index * per, (f.index + 1) * per), dst: f.slab.buf })));
    }
  } catch (e) {
    for (const f of fresh) f.slab.release();
    throw e;
  }
  const entries = fresh.map((f) => p.host.insert(f.id, f.slab));
  p.disk?.write(entries);
  p.counters.recordStore(entries.length, entries.reduce((n, e) => n + e.slab.buf.length, 0), present, skipped);
  return { stored: entries.length, present, skipped, committed: p.sync.write(entries) };
}

/**
 * Leased chunks as views of pinned host slabs; null for a chunk that could
 * not be had. The caller must call done() once it has copied them out.
 */
export async function retrieveInline(p: ManagerParts, ns: Namespace, leaseId: number, first: number, num: number): Promise<{ chunks: Array<Buffer | null>; done(): void }> {
  const lease = leaseOf(p, ns, leaseId, first, num);
  const entries = await leasedEntries(p, lease, first, num);
  const chunks = entries.map((e) => (e === null ? null : e.slab.buf));
  p.counters.recordRetrieve(entries, (j) => lease.group.tokensOf(first + j));
  return {
    chunks,
    done: () => {
      const window = lease.group.window;
      if (window !== null) for (let j = 0; j < entries.length; j++) window.consume(lease, first + j);
      unpinAll(p, entries);
    },
  };
}

export async function retrieveBlocks(p: ManagerParts, ns: Namespace, leaseId: number, first: number, num: number, blockIds: Uint32Array, copier: BlockCopier): Promise<BlockRetrieveResult> {
  const lease = leaseOf(p, ns, leaseId, first, num);
  const count = num === 0 ? lease.group.positions - first : num;
  const perChunk = copier.blocksPerChunk;
  if (blockIds.length !== count * perChunk) {
    throw new BadBlockIdError(`expected ${count * perChunk} block ids for ${count} chunks of ${perChunk} blocks, got ${blockIds.length}`);
  }
  leasedEnd(lease, first, count);
  const failed: number[] = [];
  const failChunk = (j: number): void => {
    for (const b of blockIds.subarray(j * perChunk, (j + 1) * perChunk)) if (b !== SKIP_BLOCK) failed.push(b);
  };
  // Prefill saved: the blocks actually written (a skipped block was computed by the worker).
  const blockTokens = p.chunkSize / perChunk;
  let loaded = 0;
  let tokens = 0;
  const unwant = lease.group.window?.want(lease, first, first + count);
  try {
    await inArrivalOrder(lease, first, count, async (batch) => {
      const entries = batch.map((j) => pinLeased(p, lease, first + j));
      const jobs: Array<{ blockIds: Uint32Array; src: Buffer }> = [];
      const copied: number[] = [];
      entries.forEach((entry, k) => {
        const j = batch[k];
        if (entry === null || entry.slab.buf.length !== copier.chunkBytes) {
          failChunk(j);
        } else {
          jobs.push({ blockIds: blockIds.subarray(j * perChunk, (j + 1) * perChunk), src: entry.slab.buf });
          copied.push(j);
        }
      });
      try {
        if (jobs.length > 0) await copier.scatter(jobs);
      } catch (e) {
        p.log.warn('scatter failed; the worker recomputes these chunks', { error: errorMessage(e) });
        for (const j of copied) failChunk(j);
        return;
      } finally {
        // Each chunk of the batch had its turn (copied, or failed for the
        // worker to recompute): its window share goes to the next fetch.
        const window = lease.group.window;
        if (window !== null) for (const j of batch) window.consume(lease, first + j);
        unpinAll(p, entries);
      }
      loaded += copied.length;
      for (const j of copied) {
        let written = 0;
        for (const b of blockIds.subarray(j * perChunk, (j + 1) * perChunk)) if (b !== SKIP_BLOCK) written++;
        tokens += Math.min(lease.group.tokensOf(first + j) || p.chunkSize, written * blockTokens);
      }
    });
  } finally {
    unwant?.();
  }
  p.counters.recordRetrieveCounts(loaded, loaded * copier.chunkBytes, count - loaded, tokens);
  return { loaded, failed: count - loaded, failedBlocks: Uint32Array.from(failed) };
}

/**
 * Runs `copy` on the indexes j of the lease's chunks [first, first + count)
 * whose fetch has settled, a batch at a time and never two at once, until
 * every chunk has been in a batch.
 */
async function inArrivalOrder(lease: Lease, first: number, count: number, copy: (batch: number[]) => Promise<void>): Promise<void> {
  const ready: number[] = [];
  let wake: (() => void) | null = null;
  for (let j = 0; j < count; j++) {
    const pending = leasedPending(lease, first + j);
    if (pending === null) {
      ready.push(j);
      continue;
    }
    const settled = (): void => {
      ready.push(j);
      wake?.();
    };
    pending.then(settled, settled);
  }
  for (let left = count; left > 0; ) {
    if (ready.length === 0) await new Promise<void>((resolve) => (wake = resolve));
    wake = null;
    const batch = ready.splice(0);
    left -= batch.length;
    await copy(batch);
  }
}

/** The lease; a Retrieve of an expired one counts its asked chunks as lease_expired misses. */
function leaseOf(p: ManagerParts, ns: Namespace, leaseId: number, first: number, num: number): Lease {
  const lease = p.leases.get(leaseId, ns.id);
  if (lease === undefined) {
    const expired = p.leases.expiredChunks(leaseId);
    // num 0: every chunk from `first` on.
    if (expired > 0) p.counters.misses.lease_expired += Math.min(num || Infinity, Math.max(0, expired - first));
    throw new LeaseNotFoundError(leaseId);
  }
  return lease;
}

/** The end of the lease's chunks [first, first + num) (num 0: to the end), checked against its size. */
function leasedEnd(lease: Lease, first: number, num: number): number {
  const size = lease.group.positions;
  const end = num === 0 ? size : first + num;
  if (!Number.isInteger(first) || first < 0 || end > size || end < first) {
    throw new BadRequestError(`expected chunks within the lease's ${size}, got first_chunk ${first} num_chunks ${num}`);
  }
  return end;
}

/** Leased chunk i's entry with one extra pin for the copy; null when it could not be had. */
function pinLeased(p: ManagerParts, lease: Lease, i: number): HostEntry | null {
  const e = leasedEntry(lease, i);
  // Read out once already: its slab may have been evicted and reused since.
  if (e === null || lease.released || lease.group.window?.taken(lease, i) === true) return null;
  p.host.pinEntry(e);
  return e;
}

/** Pinned entries (one extra pin each, for the copy) of a lease's chunks, once every fetch settled. */
async function leasedEntries(p: ManagerParts, lease: Lease, first: number, num: number): Promise<Array<HostEntry | null>> {
  const end = leasedEnd(lease, first, num);
  // One reply carries them all, so they are fetched together (the frame limit bounds them), not a window at a time.
  lease.group.window?.demand(lease, first, end);
  const waits: Promise<void>[] = [];
  for (let i = first; i < end; i++) {
    const pending = leasedPending(lease, i);
    if (pending !== null) waits.push(pending);
  }
  if (waits.length > 0) await Promise.all(waits);
  const entries: Array<HostEntry | null> = [];
  for (let i = first; i < end; i++) entries.push(pinLeased(p, lease, i));
  return entries;
}

export function unpinAll(p: ManagerParts, entries: Array<HostEntry | null>): void {
  for (const e of entries) if (e !== null) p.host.unpin(e);
}
