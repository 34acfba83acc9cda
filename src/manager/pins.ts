/**
 * Prefix pins (`kvtier pin`): host entries kept from eviction on an
 * operator's word, up to pin_budget_bytes, until `kvtier unpin`.
 *
 * Unlike leases they belong to the daemon, not to the connection that asked:
 * the CLI pins a system prompt and exits. Each pinned entry holds one pin of
 * the host tier's count (host-tier.ts), so the LRU never takes it; an entry
 * removed meanwhile (Invalidate, `kvtier clear`) is doomed and its slab is
 * freed when prune() or dropNamespace() drops the pin.
 */
import type { ChunkId } from '../tiers/chunk-id.js';
import type { HostEntry, HostTier } from '../tiers/host-tier.js';

export class PrefixPins {
  readonly budgetBytes: number;
  readonly #host: HostTier;
  readonly #entries = new Map<string, HostEntry>();
  #bytes = 0;

  constructor(host: HostTier, budgetBytes: number) {
    this.#host = host;
    this.budgetBytes = budgetBytes;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get count(): number {
    return this.#entries.size;
  }

  has(id: ChunkId): boolean {
    return this.#entries.has(id.hostKey);
  }

  /** Whether `bytes` more fit in the budget. */
  fits(bytes: number): boolean {
    return this.#bytes + bytes <= this.budgetBytes;
  }

  add(entry: HostEntry): void {
    if (this.#entries.has(entry.id.hostKey)) return;
    this.#host.pinEntry(entry);
    this.#entries.set(entry.id.hostKey, entry);
    this.#bytes += entry.slab.buf.length;
  }

  remove(id: ChunkId): boolean {
    const entry = this.#entries.get(id.hostKey);
    if (entry === undefined) return false;
    this.#drop(entry);
    return true;
  }

  /** Drops the pins of entries removed from the host tier since they were pinned. */
  prune(): void {
    for (const entry of [...this.#entries.values()]) if (entry.doomed) this.#drop(entry);
  }

  dropNamespace(namespaceId: string): number {
    let n = 0;
    for (const entry of [...this.#entries.values()]) {
      if (entry.id.namespaceId === namespaceId) {
        this.#drop(entry);
        n++;
      }
    }
    return n;
  }

  close(): void {
    for (const entry of [...this.#entries.values()]) this.#drop(entry);
  }

  #drop(entry: HostEntry): void {
    this.#entries.delete(entry.id.hostKey);
    this.#bytes -= entry.slab.buf.length;
    this.#host.unpin(entry);
  }
}
