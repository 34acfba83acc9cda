/**
 * Real POSIX shm files holding KV the way vLLM lays it out, plus a reference
 * model of where each block of each plane lives that is computed from the
 * tensor shape (row-major strides), not from the planner under test.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';

import type { KvLayoutSpec, KvPlaneSpec, KvRegionSpec } from '../../native/index.js';

let counter = 0;

export function shmPath(tag: string): string {
  return `/dev/shm/kvtier-test-${process.pid}-${tag}-${counter++}`;
}

/** Byte offset of an element index in a row-major tensor of `shape`. */
export function offsetOf(shape: number[], index: number[], elemBytes: number): number {
  let off = 0;
  for (let i = 0; i < shape.length; i++) off = off * shape[i] + (index[i] ?? 0);
  return off * elemBytes;
}

export interface KvFixture {
  spec: KvLayoutSpec;
  files: string[];
  /** [region index, byte offset, byte length] of block b of plane p. */
  where(plane: number, block: number): [number, number, number];
  read(): Buffer[];
  cleanup(): void;
}

export interface Shape {
  layers: number;
  numBlocks: number;
  blockSize: number;
  heads: number;
  headDim: number;
  elemBytes: number;
  chunkTokens: number;
}

type PlaneRef = { region: number; plane: KvPlaneSpec; at: (b: number) => number; bytes: number };

function build(tag: string, shape: Shape, regionSizes: number[], planes: PlaneRef[]): KvFixture {
  const files = regionSizes.map(() => shmPath(tag));
  const regions: KvRegionSpec[] = regionSizes.map((size, i) => {
    writeFileSync(files[i], randomBytes(size));
    return { regionId: 100 + i, sizeBytes: size, shmPath: files[i] };
  });
  return {
    spec: { regions, planes: planes.map((p) => p.plane), numBlocks: shape.numBlocks, blockSize: shape.blockSize, chunkTokens: shape.chunkTokens },
    files,
    where: (p, b) => [planes[p].region, planes[p].at(b), planes[p].bytes],
    read: () => files.map((f) => readFileSync(f)),
    cleanup: () => files.forEach((f) => rmSync(f, { force: true })),
  };
}

/** vLLM flash-attn: one tensor per layer, (2, num_blocks, block, heads, dim) => K and V planes. */
export function flashAttn(s: Shape): KvFixture {
  const shape = [2, s.numBlocks, s.blockSize, s.heads, s.headDim];
  const size = offsetOf(shape, [2], s.elemBytes);
  const blockBytes = s.blockSize * s.heads * s.headDim * s.elemBytes;
  const planes: PlaneRef[] = [];
  for (let l = 0; l < s.layers; l++) {
    for (const kv of [0, 1]) {
      const at = (b: number): number => offsetOf(shape, [kv, b], s.elemBytes);
      planes.push({ region: l, at, bytes: blockBytes, plane: { layer: l, regionId: 100 + l, offset: at(0), blockStride: at(1) - at(0), blockBytes } });
    }
  }
  return build('fa', s, new Array<number>(s.layers).fill(size), planes);
}

/** vLLM flashinfer: one tensor per layer, (num_blocks, 2, block, heads, dim) => interleaved K/V planes. */
export function flashInfer(s: Shape): KvFixture {
  const shape = [s.numBlocks, 2, s.blockSize, s.heads, s.headDim];
  const size = offsetOf(shape, [s.numBlocks], s.elemBytes);
  const blockBytes = s.blockSize * s.heads * s.headDim * s.elemBytes;
  const planes: PlaneRef[] = [];
  for (let l = 0; l < s.layers; l++) {
    for (const kv of [0, 1]) {
      const at = (b: number): number => offsetOf(shape, [b, kv], s.elemBytes);
      planes.push({ region: l, at, bytes: blockBytes, plane: { layer: l, regionId: 100 + l, offset: at(0), blockStride: at(1) - at(0), blockBytes } });
    }
  }
  return build('fi', s, new Array<number>(s.layers).fill(size), planes);
}

/** MLA: one tensor per layer, (num_blocks, block, 576) => one plane. */
export function mla(s: Shape): KvFixture {
  const shape = [s.numBlocks, s.blockSize, 576];
  const size = offsetOf(shape, [s.numBlocks], s.elemBytes);
  const planes: PlaneRef[] = [];
  for (let l = 0; l < s.layers; l++) {
    const at = (b: number): number => offsetOf(shape, [b], s.elemBytes);
    const blockBytes = s.blockSize * 576 * s.elemBytes;
    planes.push({ region: l, at, bytes: blockBytes, plane: { layer: l, regionId: 100 + l, offset: 0, blockStride: at(1), blockBytes } });
  }
  return build('mla', s, new Array<number>(s.layers).fill(size), planes);
}

/** All layers packed in one buffer: (layers, 2, num_blocks, block, heads, dim), one region. */
export function packed(s: Shape): KvFixture {
  const shape = [s.layers, 2, s.numBlocks, s.blockSize, s.heads, s.headDim];
  const size = offsetOf(shape, [s.layers], s.elemBytes);
  const blockBytes = s.blockSize * s.heads * s.headDim * s.elemBytes;
  const planes: PlaneRef[] = [];
  for (let l = 0; l < s.layers; l++) {
    for (const kv of [0, 1]) {
      const at = (b: number): number => offsetOf(shape, [l, kv, b], s.elemBytes);
      planes.push({ region: 0, at, bytes: blockBytes, plane: { layer: l, regionId: 100, offset: at(0), blockStride: at(1) - at(0), blockBytes } });
    }
  }
  return build('packed', s, [size], planes);
}

/** The chunk a gather of `ids` must produce, built from the reference model. */
export function expectedChunk(fx: KvFixture, data: Buffer[], ids: number[]): Buffer {
  const parts: Buffer[] = [];
  fx.spec.planes.forEach((_, p) => {
    for (const b of ids) {
      const [r, off, len] = fx.where(p, b);
      parts.push(data[r].subarray(off, off + len));
    }
  });
  return Buffer.concat(parts);
}
