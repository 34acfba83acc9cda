// Layout math without the addon: chunk sizes for real model shapes and the
// checks of a registration. (The segment lists the addon expands from block
// ids are tested in plan-blocks.test.ts.)
import { describe, expect, test } from 'vitest';

import { LayoutPlan, type KvLayoutSpec } from '../../native/layout-plan.js';

function llama8bFlashAttn(numBlocks: number): KvLayoutSpec {
  const blockBytes = 16 * 8 * 128 * 2;
  const layerBytes = 2 * numBlocks * blockBytes;
  const regions = Array.from({ length: 32 }, (_, l) => ({ regionId: l, sizeBytes: layerBytes, shmPath: `/x/${l}` }));
  const planes = regions.flatMap((r, l) => [0, 1].map((kv) => ({ layer: l, regionId: r.regionId, offset: kv * numBlocks * blockBytes, blockStride: blockBytes, blockBytes })));
  return { regions, planes, numBlocks, blockSize: 16, chunkTokens: 256 };
}

describe('LayoutPlan', () => {
  test('Llama-3.1-8B bf16, block 16, 256-token chunks is 32 MiB per chunk', () => {
    const plan = new LayoutPlan(llama8bFlashAttn(100));
    expect(plan.blocksPerChunk).toBe(16);
    expect(plan.chunkBytes).toBe(32 << 20);
  });

  test('a stride smaller than the block (overlapping blocks) is a bad layout', () => {
    const spec = llama8bFlashAttn(10);
    spec.planes[0] = { ...spec.planes[0], blockStride: 100 };
    expect(() => new LayoutPlan(spec)).toThrow(/expected planes\[0\] \(layer 0\)\.block_stride >= block_bytes 32768 \(blocks must not overlap\), got 100/);
  });

  test('regions need exactly one of shm_path and a 64-byte cuda_ipc_handle', () => {
    const spec = llama8bFlashAttn(10);
    spec.regions[0] = { regionId: 0, sizeBytes: spec.regions[0].sizeBytes };
    expect(() => new LayoutPlan(spec)).toThrow(/exactly one of shm_path or cuda_ipc_handle for region 0, got neither/);
    spec.regions[0] = { regionId: 0, sizeBytes: spec.regions[0].sizeBytes, cudaIpcHandle: new Uint8Array(10) };
    expect(() => new LayoutPlan(spec)).toThrow(/expected 64 bytes for cuda_ipc_handle of region 0, got 10/);
  });

  test('one registration is one kind of memory on one device', () => {
    const spec = llama8bFlashAttn(10);
    spec.regions[1] = { regionId: 1, sizeBytes: spec.regions[1].sizeBytes, cudaIpcHandle: new Uint8Array(64), deviceIndex: 0 };
    expect(() => new LayoutPlan(spec)).toThrow('expected every region of one registration on one kind of memory, got shm and cuda device 0');
    const gpu = llama8bFlashAttn(10);
    gpu.regions = gpu.regions.map((r, i) => ({ regionId: r.regionId, sizeBytes: r.sizeBytes, cudaIpcHandle: new Uint8Array(64), deviceIndex: i % 2 }));
    expect(() => new LayoutPlan(gpu)).toThrow(/got cuda device 0 and cuda device 1/);
  });
});
