/**
 * Defaults of `kvtier bench ttft` that its --help shows. They live here, not
 * in bench/, so that the CLI can describe the bench without importing it
 * (bench modules load only when a bench runs); bench/ttft.ts and
 * bench/ttft-shapes.ts re-export them.
 */
export const MODEL_DEFAULTS = { models: ['llama-3.1-8b', 'llama-3.3-70b-tp8'], contexts: [8192, 32768, 131072] };

/** Modelled fraction of H100 peak bf16 FLOPS. */
export const DEFAULT_MFU = 0.45;
