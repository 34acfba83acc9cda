/**
 * Names that are not table keys but still mean something: renamed keys,
 * extra_config sub-keys kvtier reads, LMCache options kvtier does not
 * implement, and the nearest-key suggestion for typos.
 *
 * Kept apart from schema.ts so the table stays one entry per key.
 */
import { FIELD_BY_KEY, type Field } from './schema.js';

/** Old or short key -> current key. The value is applied, with a warning. */
export const RENAMED: ReadonlyMap<string, string> = new Map([
  ['socket', 'socket_path'],
  ['ttl', 'ttl_secs'],
  ['metrics', 'metrics_port'],
]);

/**
 * extra_config sub-keys that set a table field (LMCache keeps backend options
 * there). Earlier names win over later ones for the same field.
 */
export const EXTRA_KEYS: ReadonlyArray<readonly [string, Field]> = [
  ['valkey_mode', 'valkeyMode'],
  ['valkey_username', 'valkeyUsername'],
  ['username', 'valkeyUsername'],
  ['valkey_password', 'valkeyPassword'],
  ['password', 'valkeyPassword'],
  ['valkey_tls_ca_file', 'valkeyTlsCaFile'],
  ['valkey_tls_insecure', 'valkeyTlsInsecure'],
];

/** LMCache v1 options with no kvtier meaning: warned about, then ignored. */
export const LMCACHE_UNIMPLEMENTED: ReadonlySet<string> = new Set([
  'local_device', 'use_layerwise', 'enable_blending',
  'blend_special_str', 'blend_recompute_ratios', 'enable_p2p', 'lookup_url', 'distributed_url',
  'enable_pd', 'pd_role', 'pd_buffer_size', 'pd_buffer_device', 'transfer_channel',
  'remote_storage_plugins', 'storage_plugins', 'enable_controller', 'controller_url', 'lmcache_instance_id',
  'save_decode_cache', 'pipelined_backend', 'pre_caching_hash_algorithm', 'cache_policy',
  'gds_path', 'cufile_buffer_size', 'weka_path', 'nixl_role', 'nixl_buffer_size', 'nixl_buffer_device',
  'numa_mode', 'enable_async_loading', 'internal_api_server_enabled', 'save_only_first_rank',
  'audit_actual_remote_url', 'py_enable_gc', 'min_retrieve_tokens', 'priority_limit',
]);

export function unimplementedMessage(key: string, where: string): string {
  return `${key} (${where}) is an LMCache option kvtier does not implement; ignored`;
}

export function renamedMessage(oldName: string, newName: string, where: string): string {
  return `${oldName} (${where}) was renamed: use ${newName} instead (value applied)`;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

const KNOWN = [...FIELD_BY_KEY.keys(), ...RENAMED.keys()];

/** The known key nearest to `name`, if it is near enough to be a typo. */
export function nearestKey(name: string, candidates: readonly string[] = KNOWN): string | null {
  const lower = name.toLowerCase();
  const limit = Math.max(1, Math.min(3, Math.floor(lower.length / 3)));
  let best: string | null = null;
  let bestD = limit + 1;
  for (const k of candidates) {
    const d = editDistance(lower, k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best;
}

export function unknownMessage(key: string, where: string): string {
  const near = nearestKey(key);
  return `unknown config key ${key} (${where}) ignored${near ? `; did you mean ${near}?` : ''}`;
}
