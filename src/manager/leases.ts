/**
 * Leases: the chunks a Lookup matched, pinned until they are loaded.
 *
 * A lease belongs to the connection that asked (released when it closes)
 * but may be used by any connection of the same namespace: vLLM looks up
 * from its scheduler process and loads from its worker processes. Expiry is
 * swept by one coarse timer, not one timer per lease.
 */
import type { ChunkId } from '../tiers/chunk-id.js';
import type { HostEntry } from '../tiers/host-tier.js';

export interface LeasedChunk {
  readonly id: ChunkId;
  /** Tokens this chunk covers (chunk_size, or less for a saved partial chunk). */
  readonly tokens: number;
  entry: HostEntry | null;
  /** Set while the chunk is being prefetched from the remote tier. */
  pending: Promise<HostEntry | null> | null;
}

export interface Lease {
  readonly id: number;
  readonly namespaceId: string;
  readonly owner: number;
  readonly chunks: LeasedChunk[];
  expiresAt: number;
  released: boolean;
}

export class LeaseTable {
  #leases = new Map<number, Lease>();
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

  create(namespaceId: string, owner: number, chunks: LeasedChunk[], ttlMs: number): Lease {
    const lease: Lease = { id: this.#nextId++, namespaceId, owner, chunks, expiresAt: Date.now() + ttlMs, released: false };
    this.#leases.set(lease.id, lease);
    return lease;
  }

  get(id: number, namespaceId: string): Lease | undefined {
    const lease = this.#leases.get(id);
    if (lease === undefined || lease.namespaceId !== namespaceId) return undefined;
    if (lease.expiresAt <= Date.now()) {
      this.release(lease);
      return undefined;
    }
    return lease;
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
    for (const lease of [...this.#leases.values()]) if (lease.expiresAt <= now) this.release(lease);
  }

  close(): void {
    clearInterval(this.#timer);
    for (const lease of [...this.#leases.values()]) this.release(lease);
  }
}
