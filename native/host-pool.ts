/**
 * NativePool: the pinned host pool the host tier allocates slabs from (it
 * fulfils src/tiers/host-memory.ts's HostMemory, structurally: native/
 * imports nothing from src/). Arenas of at most ARENA_MAX_BYTES are mapped
 * at construction; slabs are Buffer views into them, released exactly once.
 */
import { coded, badRequest, nativeFailure } from './errors.js';
import { load, type BindingPool } from './loader.js';

/** A slab of the pool: exactly the requested length, a view, never copied. */
export interface PoolSlab {
  readonly buf: Buffer;
  release(): void;
}

/** What the pool holds and how far warming got (src/tiers/host-memory.ts HostMemoryInfo). */
export interface PoolInfo {
  kind: 'native';
  capacityBytes: number;
  usedBytes: number;
  /** Bytes faulted in and allocatable; below capacityBytes while the pool warms. */
  readyBytes: number;
  /** Bytes page-locked (mlock or cudaHostAlloc). */
  lockedBytes: number;
  /** Warming finished: readyBytes === capacityBytes, and `pinned` is final. */
  warm: boolean;
  /** What the OS gave: pinned (cudaHostAlloc or mlock, every byte), huge pages. */
  pinned: boolean;
  hugePages: boolean;
  detail: string;
}

/**
 * Largest single pinned allocation. A slab reaches JavaScript as a view of
 * its allocation's ArrayBuffer, and Node's Buffers end at 4 GiB, so a bigger
 * pool is made of several arenas of at most this size; no slab spans two.
 */
export const ARENA_MAX_BYTES = 2 ** 31;

/** Arenas warm in steps of this many bytes; each step makes its bytes allocatable. */
export const WARM_STEP_BYTES = 64 * 1024 * 1024;

export interface NativePoolOptions {
  /**
   * Fault in and mlock the arenas off the JS thread, one after the other,
   * instead of in the constructor; until a step is ready its bytes are not
   * handed out (allocate() returns null). The daemon warms in the background
   * so that it listens at once (the first WARM_STEP_BYTES are warmed in the
   * constructor even so); tests and benches warm at construction.
   */
  background?: boolean;
}

/**
 * The pinned host pool: arenas mapped at construction, slabs are Buffer
 * views into them. Warming (faulting in and locking) happens in the
 * constructor, or with `background` arena by arena on a worker thread.
 */
export class NativePool {
  readonly capacityBytes: number;
  #arenas: BindingPool[] = [];
  #closed = false;
  #warm: Promise<PoolInfo>;

  constructor(capacityBytes: number, options: NativePoolOptions = {}) {
    if (!Number.isSafeInteger(capacityBytes) || capacityBytes < 4096) {
      throw badRequest(`expected an integer >= 4096 for the pool size in bytes, got ${capacityBytes}`);
    }
    const Pool = load().Pool;
    try {
      for (let left = capacityBytes; left >= 4096; left -= ARENA_MAX_BYTES) {
        this.#arenas.push(new Pool(Math.min(left, ARENA_MAX_BYTES)));
      }
      // In the background, the first step still warms here: a daemon is never up with no room at all.
      if (options.background !== true) for (const a of this.#arenas) a.warmNow(ARENA_MAX_BYTES);
      else this.#arenas[0].warmNow(WARM_STEP_BYTES);
    } catch (e) {
      for (const a of this.#arenas) a.close();
      throw coded(e);
    }
    this.capacityBytes = this.#arenas.reduce((n, a) => n + a.info().capacityBytes, 0);
    this.#warm = options.background === true ? this.#warmAll() : Promise.resolve(this.info());
  }

  /** Resolves with info() once every arena is warm (or the pool closed while warming). */
  whenWarm(): Promise<PoolInfo> {
    return this.#warm;
  }

  async #warmAll(): Promise<PoolInfo> {
    for (const a of this.#arenas) {
      if (this.#closed) break;
      try {
        await a.warm(WARM_STEP_BYTES);
      } catch (e) {
        throw coded(e);
      }
    }
    return this.info();
  }

  allocate(bytes: number): PoolSlab | null {
    if (this.#closed) throw nativeFailure('the native pool is closed');
    if (!Number.isSafeInteger(bytes) || bytes < 1) {
      throw badRequest(`expected a positive integer for slab bytes, got ${bytes}`);
    }
    for (const arena of this.#arenas) {
      const offset = arena.alloc(bytes);
      if (offset < 0) continue;
      const buf = Buffer.from(arena.buffer, offset, bytes);
      let released = false;
      return {
        buf,
        release: () => {
          if (released) throw nativeFailure(`slab at pool offset ${offset} released twice`);
          released = true;
          if (!this.#closed) arena.free(offset);
        },
      };
    }
    return null;
  }

  info(): PoolInfo {
    const all = this.#arenas.map((a) => a.info());
    const sum = (f: (i: (typeof all)[number]) => number): number => all.reduce((n, i) => n + f(i), 0);
    const warm = all.every((i) => i.warm);
    // Arenas warm in order: the last one warmed (or warming) says what mlock did.
    const last = all.find((i) => !i.warm) ?? all[all.length - 1];
    return {
      kind: 'native',
      capacityBytes: sum((i) => i.capacityBytes),
      usedBytes: sum((i) => i.usedBytes),
      readyBytes: sum((i) => i.readyBytes),
      lockedBytes: sum((i) => i.lockedBytes),
      warm,
      pinned: all.every((i) => i.pinned),
      hugePages: all.every((i) => i.hugePages),
      detail: all.length === 1 ? all[0].detail : `${all.length} arenas: ${last.detail}`,
    };
  }

  /** Frees the pool; every slab Buffer becomes empty (the ArrayBuffers are detached). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const a of this.#arenas) a.close();
  }
}

