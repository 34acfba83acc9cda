/** Percentiles of a sample, in the sample's unit. */
export function percentiles(samples: number[]): { p50: number; p99: number; max: number } {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  const round = (v: number): number => Math.round(v * 10) / 10;
  return { p50: round(at(0.5)), p99: round(at(0.99)), max: round(s[s.length - 1]) };
}

export function nowUs(): number {
  return Number(process.hrtime.bigint()) / 1000;
}

/** GB/s (10^9 bytes per second), three decimals. */
export function gbps(bytes: number, ms: number): number {
  return Math.round((bytes / ms / 1e6) * 1000) / 1000;
}

/** The middle value (the upper middle for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** 0..n-1 in a random order (Fisher-Yates): block ids as a long-running cache scatters them. */
export function shuffled(n: number): Uint32Array {
  const a = Uint32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** The KV shape and batch the host-tier throughput benches copy (default Llama-3.1-8B). */
export interface KvBenchShape {
  layers?: number;
  kvHeads?: number;
  headDim?: number;
  elemBytes?: number;
  blockSize?: number;
  chunkTokens?: number;
  numBlocks?: number;
  chunksPerBatch?: number;
  iters?: number;
  /** Rounds of (copy, reference); medians are reported. */
  rounds?: number;
}

/** KvBenchShape with its defaults filled in and checked. */
export function resolveShape(o: KvBenchShape): Required<KvBenchShape> & { blocksPerChunk: number } {
  const r = {
    layers: o.layers ?? 32, kvHeads: o.kvHeads ?? 8, headDim: o.headDim ?? 128, elemBytes: o.elemBytes ?? 2,
    blockSize: o.blockSize ?? 16, chunkTokens: o.chunkTokens ?? 256, numBlocks: o.numBlocks ?? 512,
    chunksPerBatch: o.chunksPerBatch ?? 4, iters: o.iters ?? 10, rounds: o.rounds ?? 5,
  };
  const blocksPerChunk = r.chunkTokens / r.blockSize;
  if (blocksPerChunk * r.chunksPerBatch * 2 > r.numBlocks) throw new Error(`expected num_blocks >= ${blocksPerChunk * r.chunksPerBatch * 2}, got ${r.numBlocks}`);
  return { ...r, blocksPerChunk };
}
