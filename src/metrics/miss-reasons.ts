/**
 * The miss-reason breakdown both /metrics and `kvtier stats` read: the
 * manager's own counts plus verification_failed, which the Valkey tier
 * already counts (corrupt + incomplete values served as misses).
 */
import type { ChunkManager } from '../manager/chunk-manager.js';
import type { MissReason } from '../manager/counters.js';
import { remoteView } from './remote-view.js';

export function missReasons(m: ChunkManager): Record<MissReason, number> {
  const c = m.counters.misses;
  const vk = remoteView(m.remote).counters;
  return {
    not_stored: c.not_stored, evicted: c.evicted, verification_failed: (vk?.corrupt ?? 0) + (vk?.incomplete ?? 0),
    valkey_down: c.valkey_down, slow_skip: c.slow_skip, lease_expired: c.lease_expired,
  };
}
