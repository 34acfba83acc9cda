/**
 * The shape of `kvtier bench ttft --json`: one object, mode-specific rows.
 * Model mode: cases recompute / host_hit / disk_hit / valkey_hit with measured transfer
 * and modelled prefill. Endpoint mode: cold / warm (/ warm_flushed) TTFT
 * measured against a server. Engine mode: whatever rows the engine prints.
 */

export type ModelCase = 'recompute' | 'host_hit' | 'disk_hit' | 'valkey_hit';
export type EndpointCase = 'cold' | 'warm' | 'warm_flushed';

export interface TtftRow {
  model: string;
  context_tokens: number;
  case: ModelCase | EndpointCase | string;
  ttft_ms: number;
  [field: string]: unknown;
}

export interface TtftResult {
  bench: 'ttft';
  mode: 'model' | 'endpoint' | 'engine';
  rows: TtftRow[];
  [field: string]: unknown;
}
