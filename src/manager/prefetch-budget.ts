/**
 * The daemon-wide prefetch budget: the bytes of every Lookup's disk and
 * Valkey fetches in flight, or landed and not yet read, summed over Lookups.
 *
 * Each Lookup's window (prefetch-window.ts) bounds that Lookup alone, so a
 * few large Lookups at once could still fill the host pool with prefetched
 * chunks nobody had read yet, and the next fetch found no slab: a failed
 * block, recomputed. The budget is shared: a window starts a fetch only while
 * the daemon's total fits, else it parks here. Bytes freed wake the parked
 * windows in the order they parked, the first that still cannot start stops
 * the round, so a large Lookup is not starved by a stream of small ones.
 *
 * Two ways past it, each one chunk at a time, so nothing waits forever:
 * with nothing charged daemon-wide one fetch always starts (a chunk larger
 * than the budget still loads), and a Retrieve waiting on a range with
 * nothing in flight starts one of its own (PrefetchWindow.want).
 *
 * A fetch is charged its chunk's size as the pace model knows it for the
 * namespace; before the daemon has seen a chunk of that model, each Lookup
 * starts one fetch uncharged and is charged when it lands, so a cold daemon
 * may exceed the budget by one chunk per concurrent Lookup, once.
 */
const MiB = 1 << 20;

/** prefetch_budget_mb, or (null) half the pool. */
export function prefetchBudgetBytes(budgetMb: number | null, poolBytes: number): number {
  return budgetMb !== null ? budgetMb * MiB : Math.floor(poolBytes / 2);
}

/** What the budget wakes: a window with queued fetches. */
export interface BudgetWaiter {
  /** Starts what now fits; returns whether it parked again. */
  resume(): boolean;
}

export interface PrefetchBudgetStats {
  budgetBytes: number;
  /** In flight or landed and unread, over every Lookup. */
  chargedBytes: number;
  /** Lookups with fetches queued for the budget now. */
  waitingLookups: number;
  /** Times a Lookup's window had to wait for the budget. */
  waits: number;
}

export class PrefetchBudget {
  readonly limit: number;
  #charged = 0;
  #waits = 0;
  readonly #parked: BudgetWaiter[] = [];
  #waking = false;

  constructor(limitBytes: number) {
    this.limit = limitBytes;
  }

  /** Whether a fetch charged `bytes` may start now. */
  fits(bytes: number): boolean {
    return this.#charged === 0 || this.#charged + bytes <= this.limit;
  }

  /** A window's charge changed by `delta` bytes; a refund wakes parked windows. */
  charge(delta: number): void {
    this.#charged += delta;
    if (delta < 0 && this.#parked.length > 0 && !this.#waking) {
      this.#waking = true;
      // Not from inside the refunding window's own bookkeeping: after it.
      queueMicrotask(() => this.#wake());
    }
  }

  /** `w` has queued fetches that do not fit; it is resumed when bytes free. */
  park(w: BudgetWaiter): void {
    if (this.#parked.includes(w)) return;
    this.#parked.push(w);
    this.#waits++;
  }

  stats(): PrefetchBudgetStats {
    return { budgetBytes: this.limit, chargedBytes: this.#charged, waitingLookups: this.#parked.length, waits: this.#waits };
  }

  #wake(): void {
    this.#waking = false;
    while (this.#parked.length > 0 && this.fits(1)) {
      const w = this.#parked.shift()!;
      if (!w.resume()) continue;
      // Parked again (at the back): it keeps its turn at the front, and the round ends.
      this.#parked.pop();
      this.#parked.unshift(w);
      this.#waits--;
      break;
    }
  }
}
