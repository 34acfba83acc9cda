/**
 * Chunk layout math for registered KV memory, pure TypeScript (no addon).
 *
 * A worker registers regions and planes; plane p's block b lives at
 * [offset + b*blockStride, +blockBytes) of its region. A chunk of n blocks is
 * laid out plane by plane, in registration order, each plane's n blocks back
 * to back:   | p0 b0 b1 .. bn-1 | p1 b0 .. bn-1 | ... |   (n = blocksPerChunk
 * for a full chunk, so chunkBytes = blocksPerChunk * sum(blockBytes)).
 * validate() rejects bad jobs with "expected X for Y, got Z" messages;
 * planeTable is what the addon's copyBlocks expands jobs with
 * (native/src/copy.cc), re-checking every bound itself.
 */
import { SKIP_BLOCK } from '../proto/constants.js';
import { badBlockId, badLayout } from './errors.js';

export interface KvRegionSpec {
  regionId: number;
  sizeBytes: number;
  /** CPU stand-in: a POSIX shm file holding the worker's KV. */
  shmPath?: string;
  /** A 64-byte cudaIpcMemHandle_t. */
  cudaIpcHandle?: Uint8Array;
  deviceIndex?: number;
}

export interface KvPlaneSpec {
  layer: number;
  regionId: number;
  offset: number;
  blockStride: number;
  blockBytes: number;
}

export interface KvLayoutSpec {
  regions: KvRegionSpec[];
  /** Chunk bytes are laid out plane by plane in this order. */
  planes: KvPlaneSpec[];
  numBlocks: number;
  /** Tokens per GPU block. */
  blockSize: number;
  /** Tokens per chunk; a multiple of blockSize. */
  chunkTokens: number;
}

export interface PlannedPlane {
  readonly regionIndex: number;
  readonly offset: number;
  readonly blockStride: number;
  readonly blockBytes: number;
}

/** Block id that a scatter leaves untouched (the worker already has it). */
export { SKIP_BLOCK };

function checkInt(value: unknown, key: string, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw badLayout(`expected an integer >= ${min} for ${key}, got ${String(value)}`);
  }
  return value;
}

export class LayoutPlan {
  readonly planes: readonly PlannedPlane[];
  readonly numBlocks: number;
  readonly blocksPerChunk: number;
  /** Bytes of one block across all planes (one token-block of every layer). */
  readonly bytesPerBlockSlot: number;
  readonly chunkBytes: number;
  /** regions in spec order; PlannedPlane.regionIndex points into it. */
  readonly regions: readonly KvRegionSpec[];
  /** [regionIndex, offset, blockStride, blockBytes] per plane, for the addon's copyBlocks. */
  readonly planeTable: Float64Array;
  #stamp: Uint32Array;
  #generation = 0;

  constructor(spec: KvLayoutSpec) {
    this.numBlocks = checkInt(spec.numBlocks, 'num_blocks', 1);
    const blockSize = checkInt(spec.blockSize, 'block_size', 1);
    const chunkTokens = checkInt(spec.chunkTokens, 'chunk_size', 1);
    if (chunkTokens % blockSize !== 0) {
      throw badLayout(`expected chunk_size to be a multiple of block_size ${blockSize}, got ${chunkTokens}`);
    }
    this.blocksPerChunk = chunkTokens / blockSize;
    if (!Array.isArray(spec.regions) || spec.regions.length === 0) {
      throw badLayout('expected at least one region, got none');
    }
    const indexById = new Map<number, number>();
    spec.regions.forEach((r, i) => {
      const id = checkInt(r.regionId, `regions[${i}].region_id`, 0);
      if (indexById.has(id)) throw badLayout(`expected unique region ids, got ${id} twice`);
      checkInt(r.sizeBytes, `regions[${i}].size_bytes`, 1);
      const hasShm = typeof r.shmPath === 'string' && r.shmPath.length > 0;
      const hasIpc = r.cudaIpcHandle !== undefined && r.cudaIpcHandle.length > 0;
      if (hasShm === hasIpc) {
        throw badLayout(`expected exactly one of shm_path or cuda_ipc_handle for region ${id}, got ${hasShm ? 'both' : 'neither'}`);
      }
      if (hasIpc && r.cudaIpcHandle!.length !== 64) {
        throw badLayout(`expected 64 bytes for cuda_ipc_handle of region ${id}, got ${r.cudaIpcHandle!.length}`);
      }
      indexById.set(id, i);
    });
    const kinds = new Set(spec.regions.map((r) => (r.cudaIpcHandle !== undefined && r.cudaIpcHandle.length > 0 ? `cuda device ${r.deviceIndex ?? 0}` : 'shm')));
    if (kinds.size > 1) {
      throw badLayout(`expected every region of one registration on one kind of memory, got ${[...kinds].join(' and ')}`);
    }
    this.regions = spec.regions;
    if (!Array.isArray(spec.planes) || spec.planes.length === 0) {
      throw badLayout('expected at least one plane, got none');
    }
    let slot = 0;
    this.planes = spec.planes.map((p, i) => {
      const key = `planes[${i}] (layer ${String(p.layer)})`;
      const regionIndex = indexById.get(p.regionId);
      if (regionIndex === undefined) {
        throw badLayout(`expected a registered region id for ${key}.region_id, got ${String(p.regionId)}`);
      }
      const offset = checkInt(p.offset, `${key}.offset`, 0);
      const blockBytes = checkInt(p.blockBytes, `${key}.block_bytes`, 1);
      const blockStride = checkInt(p.blockStride, `${key}.block_stride`, 0);
      if (this.numBlocks > 1 && blockStride < blockBytes) {
        throw badLayout(`expected ${key}.block_stride >= block_bytes ${blockBytes} (blocks must not overlap), got ${blockStride}`);
      }
      const end = offset + (this.numBlocks - 1) * blockStride + blockBytes;
      const size = spec.regions[regionIndex].sizeBytes;
      if (!Number.isSafeInteger(end) || end > size) {
        throw badLayout(
          `expected ${key} to end within region ${p.regionId} of ${size} bytes, got offset ${offset} + ` +
            `${this.numBlocks - 1} x block_stride ${blockStride} + block_bytes ${blockBytes} = ${end}`,
        );
      }
      slot += blockBytes;
      return { regionIndex, offset, blockStride, blockBytes };
    });
    this.bytesPerBlockSlot = slot;
    this.chunkBytes = slot * this.blocksPerChunk;
    if (!Number.isSafeInteger(this.chunkBytes)) {
      throw badLayout(`expected a chunk size below 2^53 bytes, got ${this.chunkBytes}`);
    }
    this.#stamp = new Uint32Array(this.numBlocks);
    this.planeTable = Float64Array.from(this.planes.flatMap((p) => [p.regionIndex, p.offset, p.blockStride, p.blockBytes]));
  }

  /** Bytes a job of `blocks` block ids occupies in its buffer. */
  bytesFor(blocks: number): number {
    return blocks * this.bytesPerBlockSlot;
  }

  /**
   * Checks every job (block counts, ids, duplicates across the request,
   * buffer lengths) with messages that name the job and block. The addon
   * re-checks every bound itself when it expands the jobs into segments.
   */
  validate(jobs: readonly { blockIds: Uint32Array; buf: Uint8Array }[], scatter: boolean): void {
    const what = scatter ? 'src' : 'dst';
    // Stamps are u32: start over before the generation wraps.
    if (++this.#generation === 2 ** 32 - 1) {
      this.#stamp.fill(0);
      this.#generation = 1;
    }
    const gen = this.#generation;
    jobs.forEach((job, j) => {
      const ids = job.blockIds;
      if (!(ids instanceof Uint32Array) || ids.length < 1 || ids.length > this.blocksPerChunk) {
        throw badBlockId(
          `expected 1 to ${this.blocksPerChunk} block ids (a Uint32Array) for job ${j}, got ${ids instanceof Uint32Array ? ids.length : typeof ids}`,
        );
      }
      const need = this.bytesFor(ids.length);
      if (!(job.buf instanceof Uint8Array) || job.buf.length < need) {
        throw badBlockId(`expected at least ${need} bytes for the ${what} buffer of job ${j}, got ${job.buf?.length}`);
      }
      for (let k = 0; k < ids.length; k++) {
        const id = ids[k];
        if (id === SKIP_BLOCK && scatter) continue;
        if (id >= this.numBlocks) {
          throw badBlockId(`expected a block id below num_blocks ${this.numBlocks} for job ${j} block ${k}, got ${id}`);
        }
        if (this.#stamp[id] === gen) {
          throw badBlockId(`expected distinct block ids in one request, got ${id} more than once (job ${j} block ${k})`);
        }
        this.#stamp[id] = gen;
      }
    });
  }
}
