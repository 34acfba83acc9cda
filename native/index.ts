/**
 * The only module that loads the native addon (build/Release/kvtier_native.node).
 *
 * It validates everything in TypeScript first ("expected X for Y, got Z"),
 * hands the addon plain numbers, Buffers, block ids and a plane table, and maps
 * the addon's coded errors back to the classes in src/errors.ts. Exports:
 * nativeInfo(), NativePool (the pinned HostMemory) and RegisteredKv (a
 * worker's registered KV memory with batched gather/scatter). The layout
 * math is in layout-plan.ts; the C++ side re-checks every bound.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  BadBlockIdError,
  BadLayoutError,
  BadRequestError,
  ForbiddenError,
  KvtierError,
  NativeError,
  RegionUnavailableError,
  errorMessage,
} from '../src/errors.js';
import type { HostMemory, HostMemoryInfo, Slab } from '../src/tiers/host-memory.js';
import type { DiskBinding } from './disk-io.js';
import { LayoutPlan, type KvLayoutSpec } from './layout-plan.js';

export { SKIP_BLOCK, type KvLayoutSpec, type KvPlaneSpec, type KvRegionSpec } from './layout-plan.js';

interface BindingPool {
  readonly buffer: ArrayBuffer;
  alloc(bytes: number): number;
  free(offset: number): void;
  info(): { capacityBytes: number; usedBytes: number; liveSlabs: number; readyBytes: number; lockedBytes: number; warm: boolean; pinned: boolean; hugePages: boolean; cudaHost: boolean; detail: string };
  /** Faults in and mlocks the arena off the JS thread; true when done, false when stopped by close(). */
  warm(stepBytes: number): Promise<boolean>;
  warmNow(upToBytes: number): void;
  close(): void;
}

interface BindingRegion {
  readonly size: number;
  readonly kind: 'shm' | 'cuda' | 'closed';
  close(): void;
}

interface Binding extends DiskBinding {
  info(): { cudaCompiled: boolean; deviceCount: number; reason: string; copyThreads: number; cudaCopy: string; cudaCopyGpuMs: number };
  Pool: new (bytes: number) => BindingPool;
  Region: {
    new (shmPath: string, sizeBytes: number, shmDir: string, ownerUid: number): BindingRegion;
    new (ipcHandle: Uint8Array, sizeBytes: number, device: number): BindingRegion;
  };
  copyBlocks(scatter: boolean, regions: BindingRegion[], buffers: Uint8Array[], blockIds: Uint32Array[], planes: Float64Array, numBlocks: number): Promise<void>;
  chainHashes(prev: Uint8Array, tokens: Uint8Array, chunkBytes: number, count: number, out: Uint8Array): void;
  tuneMalloc(): boolean;
  peerCredentials(fd: number): PeerCredentials;
  setCudaCopy(mode: string): boolean;
  ValkeyLink: new (host: string, port: number, username: string, password: string, db: number, connections: number, connectTimeoutMs: number, pipelineBytes: number) => ValkeyLinkBinding;
  xxh64(bytes: Uint8Array): string;
}

/** What a native read job found: the manifest (when asked for) and each segment. */
export interface ValkeyReadResult {
  manifestState: 'ok' | 'nil' | 'too-long' | 'none';
  manifest: Buffer | null;
  /** Per segment: bytes landed in place, -1 absent, -2 a value of another length. */
  got: Float64Array;
  /** Per segment: xxh64 (16 hex digits) of the bytes that landed. */
  sums: string[];
}

/**
 * One Valkey node's native data plane (native/src/valkey/link.h). Segment i
 * of `src`/`dest` is bytes [i*segBytes, min(len, (i+1)*segBytes)). Rejects
 * with a `code`: KVT_VALKEY_UNAVAILABLE (connection lost, timed out),
 * KVT_VALKEY_AUTH, KVT_VALKEY_REFUSED (a server error reply), KVT_BAD_REQUEST.
 */
export interface ValkeyLinkBinding {
  write(segKeys: string[], src: Uint8Array, segBytes: number, segTtl: number, manifestKey: string, manifest: Uint8Array, sumOffsets: Uint32Array, manifestTtl: number, timeoutMs: number): Promise<void>;
  read(manifestKey: string, manifestCap: number, segKeys: string[], dest: Uint8Array, segBytes: number, timeoutMs: number): Promise<ValkeyReadResult>;
  stats(): { jobs: number; failures: number; reconnects: number; bytesOut: number; bytesIn: number };
  /** Fails every queued part and wakes running ones (their sockets are shut down); the count of queued parts. */
  abort(why: string): number;
  close(): void;
}

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new NativeError(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

let binding: Binding | undefined;

/** Where the built addon lives (for child processes that load it themselves). */
export function addonPath(): string {
  return join(packageRoot(), 'build', 'Release', 'kvtier_native.node');
}

function load(): Binding {
  if (binding !== undefined) return binding;
  const file = addonPath();
  if (!existsSync(file)) {
    throw new NativeError(`the native addon is not built (${file} is missing): run npm run build:native (needs cmake and a C++17 compiler)`);
  }
  try {
    binding = createRequire(import.meta.url)(file) as Binding;
  } catch (e) {
    throw new NativeError(`the native addon at ${file} failed to load: ${errorMessage(e)}; rebuild it with npm run build:native`, { cause: e });
  }
  return binding;
}

/** The addon's coded errors as the typed classes of src/errors.ts. */
function typed(e: unknown): KvtierError {
  if (e instanceof KvtierError) return e;
  const code = (e as { code?: unknown } | null)?.code;
  const message = errorMessage(e);
  switch (code) {
    case 'KVT_REGION_UNAVAILABLE': return new RegionUnavailableError(message);
    case 'KVT_BAD_LAYOUT': return new BadLayoutError(message);
    case 'KVT_BAD_BLOCK_ID': return new BadBlockIdError(message);
    case 'KVT_BAD_REQUEST': return new BadRequestError(message);
    case 'KVT_FORBIDDEN': return new ForbiddenError(message);
    default: return new NativeError(message, { cause: e });
  }
}

export interface NativeInfo {
  backend: 'cpu' | 'cuda';
  cudaCompiled: boolean;
  deviceCount: number;
  reason: string;
  /** Threads of the CPU copy pool (2-4). */
  copyThreads: number;
  /** How CUDA batches run: "staged" or "kernel" (KVTIER_CUDA_COPY); "none" without CUDA. */
  cudaCopy: string;
}

/** True when the addon is built and loads (the daemon falls back to HeapMemory otherwise). */
export function nativeAvailable(): boolean {
  try {
    load();
    return true;
  } catch {
    return false;
  }
}

export function nativeInfo(): NativeInfo {
  const i = load().info();
  const cuda = i.cudaCompiled && i.deviceCount > 0;
  return {
    backend: cuda ? 'cuda' : 'cpu',
    cudaCompiled: i.cudaCompiled,
    deviceCount: i.deviceCount,
    reason: cuda ? `${i.deviceCount} CUDA device(s) visible` : i.reason,
    copyThreads: i.copyThreads,
    cudaCopy: i.cudaCopy,
  };
}

export type CudaCopyMode = 'staged' | 'kernel';

/**
 * How later CUDA copy batches run: staged through device memory with the
 * bus crossed by cudaMemcpyAsync, or one kernel straight between device
 * blocks and pinned host memory (native/cuda/backend.cu says why staged is
 * the default). Process-wide; the default comes from KVTIER_CUDA_COPY, else
 * "staged". False without a CUDA build.
 */
export function setCudaCopyMode(mode: CudaCopyMode): boolean {
  return load().setCudaCopy(mode);
}

/** GPU time (CUDA events) of every CUDA copy batch so far, in ms; 0 without CUDA. */
export function cudaCopyGpuMs(): number {
  return load().info().cudaCopyGpuMs;
}

/**
 * Process-wide: large transient Buffers stay in glibc's heap instead of being
 * mmapped and faulted in afresh each time (see addon.cc). For the daemon and
 * benches; true when glibc took both settings.
 */
export function tuneMalloc(): boolean {
  return load().tuneMalloc();
}

/**
 * The prefix hash chain for `count` chunks of `chunkBytes` bytes of `tokens`
 * (the last may be shorter), continuing from `prev`, into `out` (count*32).
 * Same results as the JavaScript chain in src/chunking/prefix-hash.ts.
 */
export function chainHashes(prev: Uint8Array, tokens: Uint8Array, chunkBytes: number, count: number, out: Uint8Array): void {
  if (prev.byteLength !== 32) throw new BadRequestError(`expected 32 bytes for the previous hash, got ${prev.byteLength}`);
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1) throw new BadRequestError(`expected a positive integer for chunkBytes, got ${chunkBytes}`);
  if (!Number.isSafeInteger(count) || count < 0 || out.byteLength < count * 32 || (count > 0 && (count - 1) * chunkBytes >= tokens.byteLength)) {
    throw new BadRequestError(`expected ${count} chunks to fit ${tokens.byteLength} token bytes and ${out.byteLength} output bytes`);
  }
  load().chainHashes(prev, tokens, chunkBytes, count, out);
}

export interface ValkeyLinkOptions {
  host: string;
  port: number;
  username?: string;
  password?: string;
  db?: number;
  connections: number;
  connectTimeoutMs: number;
  /**
   * A chunk's segments are cut into parts of about this many bytes, each
   * pipelined on one connection; each part gets a job's timeout from the
   * moment it starts, not from when it was queued.
   */
  pipelineBytes: number;
}

/** A native Valkey data plane to one node; throws NativeError when the addon is not built. */
export function openValkeyLink(o: ValkeyLinkOptions): ValkeyLinkBinding {
  const { ValkeyLink } = load();
  return new ValkeyLink(o.host, o.port, o.username ?? '', o.password ?? '', o.db ?? 0, o.connections, o.connectTimeoutMs, o.pipelineBytes);
}

/** xxh64 as 16 hex digits, computed by the addon (tests compare it with checksum.ts). */
export function nativeXxh64(bytes: Uint8Array): string {
  return load().xxh64(bytes);
}

/** The disk tier's part of the addon; native/disk-io.ts checks its arguments. */
export function diskBinding(): DiskBinding {
  return load();
}

/** Who is at the other end of a connected Unix socket, as the kernel recorded it at connect(). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/** SO_PEERCRED of the connected Unix socket `fd`; throws NativeError when fd is not one. */
export function peerCredentials(fd: number): PeerCredentials {
  if (!Number.isSafeInteger(fd) || fd < 0) throw new BadRequestError(`expected a file descriptor for peerCredentials, got ${fd}`);
  try {
    return load().peerCredentials(fd);
  } catch (e) {
    throw typed(e);
  }
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
export class NativePool implements HostMemory {
  readonly capacityBytes: number;
  #arenas: BindingPool[] = [];
  #closed = false;
  #warm: Promise<HostMemoryInfo>;

  constructor(capacityBytes: number, options: NativePoolOptions = {}) {
    if (!Number.isSafeInteger(capacityBytes) || capacityBytes < 4096) {
      throw new BadRequestError(`expected an integer >= 4096 for the pool size in bytes, got ${capacityBytes}`);
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
      throw typed(e);
    }
    this.capacityBytes = this.#arenas.reduce((n, a) => n + a.info().capacityBytes, 0);
    this.#warm = options.background === true ? this.#warmAll() : Promise.resolve(this.info());
  }

  /** Resolves with info() once every arena is warm (or the pool closed while warming). */
  whenWarm(): Promise<HostMemoryInfo> {
    return this.#warm;
  }

  async #warmAll(): Promise<HostMemoryInfo> {
    for (const a of this.#arenas) {
      if (this.#closed) break;
      try {
        await a.warm(WARM_STEP_BYTES);
      } catch (e) {
        throw typed(e);
      }
    }
    return this.info();
  }

  allocate(bytes: number): Slab | null {
    if (this.#closed) throw new NativeError('the native pool is closed');
    if (!Number.isSafeInteger(bytes) || bytes < 1) {
      throw new BadRequestError(`expected a positive integer for slab bytes, got ${bytes}`);
    }
    for (const arena of this.#arenas) {
      const offset = arena.alloc(bytes);
      if (offset < 0) continue;
      const buf = Buffer.from(arena.buffer, offset, bytes);
      let released = false;
      return {
        buf,
        release: () => {
          if (released) throw new NativeError(`slab at pool offset ${offset} released twice`);
          released = true;
          if (!this.#closed) arena.free(offset);
        },
      };
    }
    return null;
  }

  info(): HostMemoryInfo {
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

export interface GatherJob {
  blockIds: Uint32Array;
  dst: Buffer;
}

export interface ScatterJob {
  /** SKIP_BLOCK (0xFFFFFFFF) entries are left untouched in the worker's memory. */
  blockIds: Uint32Array;
  src: Buffer;
}

export interface RegisteredKvOptions {
  /** Directories a shm_path may name a file in (default ['/dev/shm']). */
  shmDirs?: string[];
  /**
   * The uid every shm file must be owned by: the connecting peer's (the
   * daemon passes SO_PEERCRED's); default this process's own uid.
   */
  ownerUid?: number;
}

/** A worker's KV memory, mapped: batched gather (blocks -> chunk buffers) and scatter (back). */
export class RegisteredKv {
  readonly chunkBytes: number;
  readonly blocksPerChunk: number;
  readonly numBlocks: number;
  readonly backend: 'cpu' | 'cuda';
  #plan: LayoutPlan;
  #regions: BindingRegion[] = [];
  #inflight = new Set<Promise<void>>();
  #closing: Promise<void> | undefined;

  /**
   * Maps the regions; throws BadLayoutError / RegionUnavailableError /
   * ForbiddenError. The daemon opens a shm file read-write, so a client may
   * name only what it could open itself: the path must be absolute,
   * normalized and inside one of `shmDirs` (default /dev/shm), checked here
   * for the message; the addon then walks it from that directory without
   * following any symlink and maps it only if it is a regular file owned by
   * `ownerUid`.
   */
  constructor(spec: KvLayoutSpec, options: RegisteredKvOptions = {}) {
    this.#plan = new LayoutPlan(spec);
    const dirs = options.shmDirs ?? ['/dev/shm'];
    const ownerUid = options.ownerUid ?? process.getuid?.() ?? 0;
    if (!Number.isSafeInteger(ownerUid) || ownerUid < 0 || ownerUid > 0xffffffff) {
      throw new BadRequestError(`expected a uid for ownerUid, got ${ownerUid}`);
    }
    const shmDir = new Map<number, string>();
    for (const r of this.#plan.regions) {
      if (r.shmPath === undefined || r.shmPath.length === 0) continue;
      const p = r.shmPath;
      const dir = isAbsolute(p) && normalize(p) === p ? dirs.find((d) => p.startsWith(d.endsWith('/') ? d : `${d}/`)) : undefined;
      if (dir === undefined) {
        throw new BadLayoutError(`expected an absolute shm_path inside ${dirs.join(' or ')} for region ${r.regionId}, got ${p}`);
      }
      shmDir.set(r.regionId, dir);
    }
    this.chunkBytes = this.#plan.chunkBytes;
    this.blocksPerChunk = this.#plan.blocksPerChunk;
    this.numBlocks = this.#plan.numBlocks;
    const { Region } = load();
    try {
      for (const r of this.#plan.regions) {
        this.#regions.push(
          r.shmPath !== undefined && r.shmPath.length > 0
            ? new Region(r.shmPath, r.sizeBytes, shmDir.get(r.regionId)!, ownerUid)
            : new Region(r.cudaIpcHandle!, r.sizeBytes, r.deviceIndex ?? 0),
        );
      }
    } catch (e) {
      for (const region of this.#regions) region.close();
      throw typed(e);
    }
    this.backend = this.#regions.some((r) => r.kind === 'cuda') ? 'cuda' : 'cpu';
  }

  /** Copies each job's blocks (every plane) into its dst buffer, laid out as one chunk. */
  gather(jobs: readonly GatherJob[]): Promise<void> {
    return this.#run(jobs.map((j) => ({ blockIds: j.blockIds, buf: j.dst })), false);
  }

  /** Copies each job's src chunk buffer back into the given blocks. */
  scatter(jobs: readonly ScatterJob[]): Promise<void> {
    return this.#run(jobs.map((j) => ({ blockIds: j.blockIds, buf: j.src })), true);
  }

  /** Waits for copies in flight, then unmaps every region. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= Promise.allSettled([...this.#inflight]).then(() => {
      for (const region of this.#regions) region.close();
    });
    return this.#closing;
  }

  #run(jobs: { blockIds: Uint32Array; buf: Uint8Array }[], scatter: boolean): Promise<void> {
    if (this.#closing !== undefined) {
      return Promise.reject(new RegionUnavailableError('the KV registration is closed (unregistered or connection gone)'));
    }
    let promise: Promise<void>;
    try {
      const plan = this.#plan;
      plan.validate(jobs, scatter);
      promise = load().copyBlocks(scatter, this.#regions, jobs.map((j) => j.buf), jobs.map((j) => j.blockIds), plan.planeTable, plan.numBlocks);
    } catch (e) {
      return Promise.reject(typed(e));
    }
    // `jobs` (and so every Buffer) stays referenced by this closure until the copy settles.
    const tracked: Promise<void> = promise.then(
      () => { this.#inflight.delete(tracked); void jobs; },
      (e: unknown) => { this.#inflight.delete(tracked); throw typed(e); },
    );
    this.#inflight.add(tracked);
    return tracked;
  }
}
