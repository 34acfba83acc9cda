/**
 * The prefetch window: the bytes of one Lookup's fetches into the host tier
 * that may be in flight, or landed and not yet read, at once.
 *
 *   queued (position order) ──► started while the window has room ──► landed:
 *        ▲                                                     pinned per lease of its slot
 *        └──── share freed: read by every lease of its slot, a miss, or its leases gone
 *
 * Started all at once, each landed chunk held its slab until release, so a
 * context larger than the host pool loaded only what fitted and the rest came
 * back failed. Every queued position's pending promise exists from the Lookup
 * on (LeaseGroup.pending), so a Retrieve waits on it as on a started one.
 * A chunk read out (consumed) drops its lease pin and its group.entries slot
 * becomes null: the slab may be evicted, and a second Retrieve of it reports
 * it failed instead of reading a slab that was reused. A slot shared by
 * several leases (MLA: ranks with one namespace) frees its share only when
 * each of them has read it or gone. A gone lease's slot starts nothing more.
 * Whole-host positions (group pins) are not the window's business.
 * Every window also charges the daemon-wide PrefetchBudget, and waits there
 * when the sum over Lookups is full.
 */
import type { ChunkId } from '../tiers/chunk-id.js';
import type { HostEntry, HostTier } from '../tiers/host-tier.js';
import type { Lease, LeaseGroup } from './leases.js';
import type { BudgetWaiter, PrefetchBudget } from './prefetch-budget.js';

const MiB = 1 << 20;
/** The default window: a quarter of the host pool, at most this. */
const DEFAULT_CAP_BYTES = 1024 * MiB;

/** prefetch_window_mb, or (null) a quarter of the pool up to 1 GiB. */
export function prefetchWindowBytes(windowMb: number | null, poolBytes: number): number {
  return windowMb !== null ? windowMb * MiB : Math.min(Math.floor(poolBytes / 4), DEFAULT_CAP_BYTES);
}

/** Fetches chunk `id` into the host tier (from disk first when `onDisk`). */
export type Fetcher = (id: ChunkId, onDisk: boolean) => Promise<HostEntry | null>;

const QUEUED = 1;
const IN_FLIGHT = 2;
const LANDED = 3;
const DONE = 4;

export class PrefetchWindow implements BudgetWaiter {
  readonly #group: LeaseGroup;
  readonly #host: HostTier;
  readonly #budget: number;
  readonly #daemon: PrefetchBudget;
  readonly #fetch: Fetcher;
  /** Bytes charged to a fetch before it lands: a chunk's size when known, else 0 (then one at a time until one lands). */
  #unit: number;
  #charged = 0;
  #inFlight = 0;
  /** Per group.entries index: QUEUED..DONE, 0 where nothing is fetched. */
  readonly #state: Uint8Array;
  readonly #share: Float64Array;
  /** Leases of the slot still holding a landed chunk. */
  readonly #left: Uint8Array;
  readonly #ids: Array<ChunkId | undefined>;
  readonly #onDisk: Uint8Array;
  readonly #resolve: Array<(() => void) | undefined>;
  readonly #queue: number[] = [];
  #head = 0;
  /** Ranges block Retrieves wait on (want()). */
  readonly #wanted: Array<{ lease: Lease; first: number; end: number }> = [];
  /** Per position and lease (i * leases + lease.index): read out, or released with its lease. */
  #taken: Uint8Array | null = null;
  /** While the Lookup starts its first window: the remote fetches started, for the pace model. */
  #first: Array<{ at: number; fetch: Promise<HostEntry | null> }> | null = [];

  constructor(group: LeaseGroup, host: HostTier, budgetBytes: number, daemon: PrefetchBudget, unitBytes: number, fetch: Fetcher) {
    const n = group.positions * group.stride;
    this.#group = group;
    this.#host = host;
    this.#budget = budgetBytes;
    this.#daemon = daemon;
    this.#unit = unitBytes;
    this.#fetch = fetch;
    this.#state = new Uint8Array(n);
    this.#share = new Float64Array(n);
    this.#left = new Uint8Array(n);
    this.#ids = new Array<ChunkId | undefined>(n);
    this.#onDisk = new Uint8Array(n);
    this.#resolve = new Array<(() => void) | undefined>(n);
    group.pending = new Array<Promise<void> | null>(n).fill(null);
  }

  /** Queues entry `at`'s fetch (call in position order), its pending promise made now. */
  add(at: number, id: ChunkId, onDisk: boolean): void {
    this.#ids[at] = id;
    this.#onDisk[at] = onDisk ? 1 : 0;
    this.#state[at] = QUEUED;
    this.#group.pending![at] = new Promise<void>((resolve) => (this.#resolve[at] = resolve));
    this.#queue.push(at);
  }

  /** Starts the first window (once the group's leases exist); returns its remote fetches with their entry index. */
  start(): Array<{ at: number; fetch: Promise<HostEntry | null> }> {
    this.#taken = new Uint8Array(this.#group.positions * this.#group.leases.length);
    this.#pump();
    const first = this.#first!;
    this.#first = null;
    return first;
  }

  /** Whether entry `at` is the window's (its pins are handled here, not by the lease). */
  covers(at: number): boolean {
    return this.#state[at] !== 0;
  }

  /** Whether `lease` has read out (or released) its chunk at position i. */
  taken(lease: Lease, i: number): boolean {
    return this.#taken !== null && this.#taken[i * this.#group.leases.length + lease.index] === 1;
  }

  /** Starts now, past the window, the queued fetches of positions [first, end): an inline Retrieve needs them all at once. */
  demand(lease: Lease, first: number, end: number): void {
    for (let i = first; i < end; i++) {
      const at = i * this.#group.stride + lease.slot;
      if (this.#state[at] === QUEUED) this.#launch(at);
    }
  }

  /**
   * A block Retrieve of `lease` waits on positions [first, end) until the
   * returned function is called. When the window is held by chunks it does
   * not read (a worker reading a later range first) and none of its range
   * is in flight or landed, one fetch of that range starts past the window,
   * so a Retrieve always progresses, by one chunk at a time at worst.
   */
  want(lease: Lease, first: number, end: number): () => void {
    const w = { lease, first, end };
    this.#wanted.push(w);
    this.#pump();
    return () => {
      this.#wanted.splice(this.#wanted.indexOf(w), 1);
    };
  }

  /** `lease` has copied position i out (or had its turn at it): its pin goes, and the share once every lease of the slot is done. */
  consume(lease: Lease, i: number): void {
    const at = i * this.#group.stride + lease.slot;
    if (this.#state[at] !== LANDED || this.taken(lease, i)) return;
    this.#drop(lease, i, at);
    this.#pump();
  }

  /** `lease` was released or expired: its landed chunks' pins go, and a slot no lease holds starts nothing more. */
  leaseGone(lease: Lease): void {
    const { positions, stride } = this.#group;
    for (let i = 0; i < positions; i++) {
      const at = i * stride + lease.slot;
      if (this.#state[at] === LANDED && !this.taken(lease, i)) this.#drop(lease, i, at);
    }
    if (!this.#slotHeld(lease.slot)) {
      for (let i = 0; i < positions; i++) {
        const at = i * stride + lease.slot;
        if (this.#state[at] === QUEUED) this.#settle(at);
      }
    }
    this.#pump();
  }

  #drop(lease: Lease, i: number, at: number): void {
    this.#taken![i * this.#group.leases.length + lease.index] = 1;
    this.#host.unpin(this.#group.entries[at]!);
    if (--this.#left[at] > 0) return;
    this.#group.entries[at] = null;
    this.#free(at);
  }

  #slotHeld(slot: number): boolean {
    for (const l of this.#group.leases) if (l.slot === slot && !l.released) return true;
    return false;
  }

  /** The daemon budget has room again: start what fits; whether this window parked again. */
  resume(): boolean {
    return this.#pump();
  }

  /** Starts queued fetches while both budgets allow; returns whether it parked for the daemon's. */
  #pump(): boolean {
    let parked = false;
    const q = this.#queue;
    while (this.#head < q.length) {
      const at = q[this.#head];
      if (this.#state[at] !== QUEUED) {
        this.#head++;
        continue;
      }
      // Something held or in flight: start more only while it fits; of unknown size, one at a time.
      if (this.#charged > 0 && this.#charged + this.#unit > this.#budget) break;
      if (this.#unit === 0 && this.#inFlight > 0) break;
      if (!this.#daemon.fits(this.#unit)) {
        this.#daemon.park(this);
        parked = true;
        break;
      }
      this.#head++;
      this.#launch(at);
    }
    if (this.#head < q.length) for (const w of this.#wanted) this.#unblock(w);
    return parked;
  }

  #charge(delta: number): void {
    this.#charged += delta;
    this.#daemon.charge(delta);
  }

  /** Starts, past the window, the first queued chunk of a wanted range that has nothing in flight or landed for its lease to read. */
  #unblock(w: { lease: Lease; first: number; end: number }): void {
    const stride = this.#group.stride;
    let next = -1;
    for (let i = w.first; i < w.end; i++) {
      const at = i * stride + w.lease.slot;
      const state = this.#state[at];
      if (state === IN_FLIGHT || (state === LANDED && !this.taken(w.lease, i))) return;
      if (state === QUEUED && next < 0) next = at;
    }
    if (next >= 0) this.#launch(next);
  }

  #launch(at: number): void {
    this.#state[at] = IN_FLIGHT;
    this.#inFlight++;
    this.#share[at] = this.#unit;
    this.#charge(this.#unit);
    const fetch = this.#fetch(this.#ids[at]!, this.#onDisk[at] === 1);
    if (this.#first !== null && this.#onDisk[at] === 0) this.#first.push({ at, fetch });
    fetch.then((e) => this.#land(at, e), () => this.#land(at, null));
  }

  #land(at: number, entry: HostEntry | null): void {
    this.#inFlight--;
    const group = this.#group;
    const slot = at % group.stride;
    // The entry may have been evicted between the fetch and now: then it is a miss.
    const valid = entry !== null && !entry.doomed && this.#host.peek(this.#ids[at]!) === entry;
    let held = 0;
    if (valid) {
      if (this.#unit === 0) this.#unit = entry.slab.buf.length;
      for (const lease of group.leases) {
        if (lease.slot !== slot || lease.released) continue;
        this.#host.pinEntry(entry);
        held++;
      }
    }
    if (held > 0) {
      group.entries[at] = entry;
      this.#left[at] = held;
      this.#state[at] = LANDED;
      this.#charge(entry!.slab.buf.length - this.#share[at]);
      this.#share[at] = entry!.slab.buf.length;
    } else {
      this.#free(at);
    }
    this.#settle(at);
    this.#pump();
  }

  #free(at: number): void {
    this.#charge(-this.#share[at]);
    this.#share[at] = 0;
    this.#state[at] = DONE;
  }

  /** Entry `at` has its answer (landed, missed, or never to be fetched): its waiters wake. */
  #settle(at: number): void {
    if (this.#state[at] === QUEUED) this.#state[at] = DONE;
    this.#group.pending![at] = null;
    const resolve = this.#resolve[at];
    this.#resolve[at] = undefined;
    resolve?.();
  }
}
