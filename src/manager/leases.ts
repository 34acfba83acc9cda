/**
 * Leases: the chunks a Lookup matched, pinned until they are loaded.
 *
 * A lease belongs to the connection that asked (released when it closes)
 * but may be used by any connection of the same namespace: vLLM looks up
 * from its scheduler process and loads from its worker processes. Expiry is
 * swept by one coarse timer, not one timer per lease. The last
 * EXPIRED_SLOTS expired leases are remembered (direct-mapped by id, 48 KiB)
 * so a Retrieve that comes too late is told apart from a bad lease id.
 *
 * One Lookup, one record (LeaseGroup), whatever its rank count: its host
 * entries in one flat array, position-major, and each rank's Lease a view
 * of it by slot (the rank's distinct namespace):
 *
 *   groups[i]                    position i's chain-hash group, when every rank's
 *                                chunk was in the host tier (its entries are there)
 *   entries[i * stride + slot]   else rank's chunk i (null: not in the host tier yet)
 *   pending[i * stride + slot]   its fetch queued or in flight (the array only when
 *                                the Lookup fetches something; prefetch-window.ts)
 *
 * Each Lease releases, expires and is found by id on its own. Pins: a
 * position every rank held in the host tier is pinned once for the whole
 * group, as its chain-hash group's counter (host-tier.ts pinGroup), until the
 * group's last lease goes; a position with a chunk still to fetch pins per
 * lease and entry, as each lands, and each such pin goes once that lease
 * has read the chunk out (prefetch-window.ts). So a rank's chunks of a whole-host
 * position stay pinned until every rank of its Lookup has released (they
 * load together). Per-rank pins and one object per rank and chunk were most
 * of a TP=8 Lookup's extra cost over a TP=1 one.
 */
import { groupEntry, type HostGroup } from '../tiers/host-groups.js';
import type { HostEntry } from '../tiers/host-tier.js';
import type { PrefetchWindow } from './prefetch-window.js';

export class LeaseGroup {
  /** Chunk positions leased (every lease of the group has them all). */
  readonly positions: number;
  /** Distinct namespaces: entries per position. */
  readonly stride: number;
  readonly entries: Array<HostEntry | null>;
  /** Fetches into the host tier, same layout; settled ones are set to null. */
  pending: Array<Promise<void> | null> | null = null;
  /** What starts those fetches, a window at a time, and drops their pins once read (null: nothing fetched). */
  window: PrefetchWindow | null = null;
  /** Per position: the chain-hash group pinned once for every lease, or null where each lease pins its entries. */
  readonly groups: Array<HostGroup | null>;
  /** Whether some position is pinned per lease and entry. */
  readonly perEntry: boolean;
  readonly leases: Lease[] = [];
  /** Leases not yet released: the group pins go with the last. */
  live = 0;
  readonly #tokensOf: (i: number) => number;

  constructor(positions: number, stride: number, entries: Array<HostEntry | null>, groups: Array<HostGroup | null>, perEntry: boolean, tokensOf: (i: number) => number) {
    this.positions = positions;
    this.stride = stride;
    this.entries = entries;
    this.groups = groups;
    this.perEntry = perEntry;
    this.#tokensOf = tokensOf;
  }

  /** Tokens chunk i covers (chunk_size, less for a saved partial chunk, 0 for opaque keys). */
  tokensOf(i: number): number {
    return this.#tokensOf(i);
  }
}

export interface Lease {
  readonly id: number;
  readonly namespaceId: string;
  readonly owner: number;
  readonly group: LeaseGroup;
  /** This lease's place in group.leases. */
  readonly index: number;
  /** This lease's column of group.entries. */
  readonly slot: number;
  expiresAt: number;
  released: boolean;
}

/**
 * Chunk i's host entry for `lease` (null while fetched, or when the fetch
 * missed): of a whole-host position, the lease's namespace's entry in the
 * pinned group (or the one removed meanwhile and held by the pin).
 */
export function leasedEntry(lease: Lease, i: number): HostEntry | null {
  const g = lease.group.groups[i];
  if (g !== null) return groupEntry(g, lease.namespaceId, lease.slot);
  return lease.group.entries[i * lease.group.stride + lease.slot] ?? null;
}

/** Chunk i's fetch in flight for `lease`, or null. */
export function leasedPending(lease: Lease, i: number): Promise<void> | null {
  const pending = lease.group.pending;
  return pending === null ? null : pending[i * lease.group.stride + lease.slot];
}

const EXPIRED_SLOTS = 4096;

export class LeaseTable {
  #leases = new Map<number, Lease>();
  readonly #expiredIds = new Float64Array(EXPIRED_SLOTS);
  readonly #expiredChunks = new Uint32Array(EXPIRED_SLOTS);
  #nextId = 1;
  #timer: NodeJS.Timeout;
  readonly #onRelease: (lease: Lease) => void;

  constructor(onRelease: (lease: Lease) => void, sweepMs = 1000) {
    this.#onRelease = onRelease;
    this.#timer = setInterval(() => this.sweep(Date.now()), sweepMs);
    this.#timer.unref();
  }

  get size(): number {
    return this.#leases.size;
  }

  /** A lease of `group` for each of `namespaceIds`, in order; `slotOf[k]`: lease k's column. */
  create(group: LeaseGroup, namespaceIds: readonly string[], slotOf: readonly number[], owner: number, ttlMs: number): Lease[] {
    const expiresAt = Date.now() + ttlMs;
    for (let k = 0; k < namespaceIds.length; k++) {
      const lease: Lease = { id: this.#nextId++, namespaceId: namespaceIds[k], owner, group, index: group.leases.length, slot: slotOf[k], expiresAt, released: false };
      group.leases.push(lease);
      group.live++;
      this.#leases.set(lease.id, lease);
    }
    return group.leases;
  }

  get(id: number, namespaceId: string): Lease | undefined {
    const lease = this.#leases.get(id);
    if (lease === undefined || lease.namespaceId !== namespaceId) return undefined;
    if (lease.expiresAt <= Date.now()) {
      this.#expire(lease);
      return undefined;
    }
    return lease;
  }

  /** The chunk count of lease `id` if it expired recently (not released), else 0. */
  expiredChunks(id: number): number {
    const slot = id % EXPIRED_SLOTS;
    return this.#expiredIds[slot] === id ? this.#expiredChunks[slot] : 0;
  }

  #expire(lease: Lease): void {
    const slot = lease.id % EXPIRED_SLOTS;
    this.#expiredIds[slot] = lease.id;
    this.#expiredChunks[slot] = lease.group.positions;
    this.release(lease);
  }

  release(lease: Lease): void {
    if (lease.released) return;
    lease.released = true;
    this.#leases.delete(lease.id);
    this.#onRelease(lease);
  }

  releaseOwner(owner: number): number {
    let n = 0;
    for (const lease of [...this.#leases.values()]) {
      if (lease.owner === owner) {
        this.release(lease);
        n++;
      }
    }
    return n;
  }

  sweep(now: number): void {
    for (const lease of [...this.#leases.values()]) if (lease.expiresAt <= now) this.#expire(lease);
  }

  close(): void {
    clearInterval(this.#timer);
    for (const lease of [...this.#leases.values()]) this.release(lease);
  }
}
