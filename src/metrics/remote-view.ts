/**
 * What stats and metrics show of the remote tier. The RemoteTier contract
 * carries no figures; ValkeyTier adds `counters` and `stats()`, test fakes
 * have neither. This is the one place that looks, so stats and Prometheus
 * agree on what the remote tier reported.
 */
import type { RemoteTier } from '../manager/chunk-manager.js';
import type { ValkeyTierCounters } from '../tiers/valkey-tier.js';

export interface RemoteView {
  configured: boolean;
  available: boolean;
  counters: ValkeyTierCounters | null;
  /** ValkeyTier's stats() (counters plus data path), or just its counters. */
  detail(): Record<string, unknown> | null;
}

interface RemoteFigures {
  counters?: ValkeyTierCounters;
  stats?: () => Record<string, unknown>;
}

export function remoteView(remote: RemoteTier | null): RemoteView {
  if (remote === null) return { configured: false, available: false, counters: null, detail: () => null };
  const figures = remote as RemoteTier & RemoteFigures;
  const counters = figures.counters ?? null;
  return {
    configured: true,
    available: remote.available !== false,
    counters,
    detail: () => (typeof figures.stats === 'function' ? figures.stats() : counters === null ? null : { ...counters }),
  };
}
