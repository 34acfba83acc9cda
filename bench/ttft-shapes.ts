/**
 * Model shapes for `kvtier bench ttft` and the prefill compute model.
 *
 * KV bytes per token = 2 (K and V) x layers x KV heads (per rank) x head dim
 * x 2 bytes (bf16): the bytes a worker really stores and loads. Prefill is
 * NOT run: its time is modelled as FLOPs / (GPUs x peak x MFU), with
 *   FLOPs = 2 x params x new tokens                        (the matmuls)
 *         + 4 x layers x hidden x attended (query, key) pairs   (QK^T and AV)
 * where a causal prefill of n new tokens after c cached ones attends
 * n*c + n*(n+1)/2 pairs. Peak: 989 TFLOPS dense bf16 per H100 SXM (NVIDIA
 * H100 datasheet); MFU 0.45 is an assumption, chosen because it gives the
 * ~11 s recompute TTFT at 128K tokens for Llama-3.3-70B on 8xH100 that the
 * LMCache + Valkey figures quoted in issue 7 report (our model: 11.5 s).
 * Override with --mfu or a flat --prefill-tokens-per-s.
 */

export interface ModelShape {
  name: string;
  /** What the shape is, in words. */
  what: string;
  layers: number;
  /** KV heads held by one rank. */
  kvHeadsPerRank: number;
  headDim: number;
  elemBytes: number;
  /** Parameters of the whole model (for the compute model). */
  params: number;
  /** Query heads x head dim of the whole model. */
  hidden: number;
  /** GPUs the prefill runs on (tensor parallel). */
  gpus: number;
}

export const SHAPES: Record<string, ModelShape> = {
  'llama-3.1-8b': {
    name: 'llama-3.1-8b', what: 'Llama-3.1-8B, 1x H100: 32 layers, 8 KV heads, head dim 128, bf16',
    layers: 32, kvHeadsPerRank: 8, headDim: 128, elemBytes: 2, params: 8.03e9, hidden: 4096, gpus: 1,
  },
  'llama-3.3-70b-tp8': {
    name: 'llama-3.3-70b-tp8', what: 'Llama-3.3-70B at tensor-parallel 8, one rank: 80 layers, 1 KV head per rank, head dim 128, bf16 (8 ranks move this in parallel)',
    layers: 80, kvHeadsPerRank: 1, headDim: 128, elemBytes: 2, params: 70.6e9, hidden: 8192, gpus: 8,
  },
};

export const H100_PEAK_TFLOPS = 989;
export { DEFAULT_MFU } from '../src/cli/ttft-defaults.js';

export function kvBytesPerToken(s: ModelShape): number {
  return 2 * s.layers * s.kvHeadsPerRank * s.headDim * s.elemBytes;
}

export interface PrefillModel {
  /** Flat tokens/s when given; else the FLOPs model. */
  tokensPerS: number | null;
  mfu: number;
  peakTflops: number;
}

/** Modelled prefill time of `fresh` tokens after `cached` tokens already in the KV cache. */
export function prefillMs(s: ModelShape, cached: number, fresh: number, m: PrefillModel): number {
  if (fresh <= 0) return 0;
  if (m.tokensPerS !== null) return (fresh / m.tokensPerS) * 1000;
  const pairs = fresh * cached + (fresh * (fresh + 1)) / 2;
  const flops = 2 * s.params * fresh + 4 * s.layers * s.hidden * pairs;
  return (flops / (s.gpus * m.peakTflops * 1e12 * m.mfu)) * 1000;
}

export function describePrefill(m: PrefillModel): string {
  if (m.tokensPerS !== null) return `compute modelled: prefill at a flat ${m.tokensPerS} tokens/s (--prefill-tokens-per-s)`;
  return `compute modelled: prefill time = (2 x params x new tokens + 4 x layers x hidden x attended pairs) FLOPs / (GPUs x ${m.peakTflops} TFLOPS bf16 peak per H100 x MFU ${m.mfu}); no GPU and no model ran`;
}
