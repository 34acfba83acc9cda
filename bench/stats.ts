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
