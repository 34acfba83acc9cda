/**
 * RegisterKv (wire) -> the native addon's KvLayoutSpec. Only shape is
 * translated here (proto3 defaults, Long -> number, empty IPC handle ->
 * none); whether the layout makes sense is checked by the addon's
 * LayoutPlan, which names the offending region or plane.
 */
import type { KvLayoutSpec } from '../../native/layout-plan.js';
import type { kvtier } from './gen/kvtier.js';

export function layoutFromWire(spec: kvtier.v1.IRegisterKv, chunkTokens: number): KvLayoutSpec {
  return {
    regions: (spec.regions ?? []).map((r) => ({
      regionId: r.regionId ?? 0,
      sizeBytes: Number(r.sizeBytes ?? 0),
      shmPath: r.shmPath ?? undefined,
      cudaIpcHandle: r.cudaIpcHandle != null && r.cudaIpcHandle.length > 0 ? r.cudaIpcHandle : undefined,
      deviceIndex: r.deviceIndex ?? 0,
    })),
    planes: (spec.planes ?? []).map((p) => ({
      layer: p.layer ?? 0,
      regionId: p.regionId ?? 0,
      offset: Number(p.offset ?? 0),
      blockStride: Number(p.blockStride ?? 0),
      blockBytes: Number(p.blockBytes ?? 0),
    })),
    numBlocks: spec.numBlocks ?? 0,
    blockSize: spec.blockSize ?? 0,
    chunkTokens,
  };
}
