/**
 * Process-wide facts and switches of the addon: which backend it runs, CUDA
 * copy mode and GPU time, glibc malloc tuning.
 */
import { load } from './loader.js';

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

