/**
 * Where the host tier's bytes live.
 *
 * The host tier never allocates Buffers itself: it asks a HostMemory for a
 * Slab and gives it back with release(). HeapMemory (plain Buffers, counted
 * against a byte budget) is the fallback; native/ provides the pinned pool
 * with the same interface. A Slab is released exactly once; releasing twice
 * is a bug and throws. A pool may still be warming (faulting in and locking
 * its pages) while it serves: allocate() then finds room only in the part
 * that is ready, and info() says how far warming got.
 */
import type { PoolInfo } from '../../native/host-pool.js';

export interface Slab {
  /** Exactly the requested length; a view into the pool, never copied. */
  readonly buf: Buffer;
  release(): void;
}

/**
 * What a pool holds and how far warming got: readyBytes (faulted in and
 * allocatable) is below capacityBytes while it warms; lockedBytes are
 * page-locked; `pinned` (every byte locked) is final once `warm`. The
 * native pool defines the fields (native/ imports nothing from src/).
 */
export type HostMemoryInfo = Omit<PoolInfo, 'kind'> & { kind: 'heap' | 'native' };

export interface HostMemory {
  readonly capacityBytes: number;
  /** null when there is no room (the caller evicts and retries, or skips). */
  allocate(bytes: number): Slab | null;
  info(): HostMemoryInfo;
  /** Resolves with info() once the memory is warm (at once for memory that needs no warming). */
  whenWarm(): Promise<HostMemoryInfo>;
  close(): void;
}

export class HeapMemory implements HostMemory {
  readonly capacityBytes: number;
  #used = 0;

  constructor(capacityBytes: number) {
    this.capacityBytes = capacityBytes;
  }

  allocate(bytes: number): Slab | null {
    if (bytes > this.capacityBytes - this.#used) return null;
    this.#used += bytes;
    const buf = Buffer.allocUnsafeSlow(bytes);
    let released = false;
    return {
      buf,
      release: () => {
        if (released) throw new Error('slab released twice');
        released = true;
        this.#used -= bytes;
      },
    };
  }

  info(): HostMemoryInfo {
    return {
      kind: 'heap',
      capacityBytes: this.capacityBytes,
      usedBytes: this.#used,
      readyBytes: this.capacityBytes,
      lockedBytes: 0,
      warm: true,
      pinned: false,
      hugePages: false,
      detail: 'Node heap buffers (native pool not in use)',
    };
  }

  whenWarm(): Promise<HostMemoryInfo> {
    return Promise.resolve(this.info());
  }

  close(): void {}
}
