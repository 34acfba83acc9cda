/**
 * Where the host tier's bytes live.
 *
 * The host tier never allocates Buffers itself: it asks a HostMemory for a
 * Slab and gives it back with release(). HeapMemory (plain Buffers, counted
 * against a byte budget) is the fallback; native/ provides the pinned pool
 * with the same interface. A Slab is released exactly once; releasing twice
 * is a bug and throws.
 */

export interface Slab {
  /** Exactly the requested length; a view into the pool, never copied. */
  readonly buf: Buffer;
  release(): void;
}

export interface HostMemoryInfo {
  kind: 'heap' | 'native';
  capacityBytes: number;
  usedBytes: number;
  /** What the OS gave: pinned (cudaHostAlloc or mlock), huge pages. */
  pinned: boolean;
  hugePages: boolean;
  detail: string;
}

export interface HostMemory {
  readonly capacityBytes: number;
  /** null when there is no room (the caller evicts and retries, or skips). */
  allocate(bytes: number): Slab | null;
  info(): HostMemoryInfo;
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
      pinned: false,
      hugePages: false,
      detail: 'Node heap buffers (native pool not in use)',
    };
  }

  close(): void {}
}
