/**
 * RegisteredKv: a worker's KV memory, mapped (shm files or CUDA IPC), with
 * batched gather (blocks -> chunk buffers) and scatter (back). Layout math
 * and friendly checks are in layout-plan.ts; the addon re-checks every bound.
 * Copies in flight are tracked so close() unmaps only after they settle.
 */
import { isAbsolute, normalize } from 'node:path';

import { badLayout, badRequest, coded, regionUnavailable } from './errors.js';
import { LayoutPlan, type KvLayoutSpec } from './layout-plan.js';
import { load, type BindingRegion } from './loader.js';

export interface GatherJob {
  blockIds: Uint32Array;
  dst: Buffer;
}

export interface ScatterJob {
  /** SKIP_BLOCK entries are left untouched in the worker's memory. */
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
      throw badRequest(`expected a uid for ownerUid, got ${ownerUid}`);
    }
    const shmDir = new Map<number, string>();
    for (const r of this.#plan.regions) {
      if (r.shmPath === undefined || r.shmPath.length === 0) continue;
      const p = r.shmPath;
      const dir = isAbsolute(p) && normalize(p) === p ? dirs.find((d) => p.startsWith(d.endsWith('/') ? d : `${d}/`)) : undefined;
      if (dir === undefined) {
        throw badLayout(`expected an absolute shm_path inside ${dirs.join(' or ')} for region ${r.regionId}, got ${p}`);
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
      throw coded(e);
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
      return Promise.reject(regionUnavailable('the KV registration is closed (unregistered or connection gone)'));
    }
    let promise: Promise<void>;
    try {
      const plan = this.#plan;
      plan.validate(jobs, scatter);
      promise = load().copyBlocks(scatter, this.#regions, jobs.map((j) => j.buf), jobs.map((j) => j.blockIds), plan.planeTable, plan.numBlocks);
    } catch (e) {
      return Promise.reject(coded(e));
    }
    // `jobs` (and so every Buffer) stays referenced by this closure until the copy settles.
    const tracked: Promise<void> = promise.then(
      () => { this.#inflight.delete(tracked); void jobs; },
      (e: unknown) => { this.#inflight.delete(tracked); throw coded(e); },
    );
    this.#inflight.add(tracked);
    return tracked;
  }
}
