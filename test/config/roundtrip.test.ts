import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { loadConfig, type KvtierConfig } from '../../src/config/load.js';
import { REMOTE_SCHEMES } from '../../src/config/schema.js';
import { writeConfig } from './helpers.js';

const int = (min: number, max: number) => fc.integer({ min, max });
const nonEmpty = fc.string({ minLength: 1, maxLength: 40 });
const RESERVED = new Set(['valkey_mode', 'valkey_username', 'username', 'valkey_password', 'password', '__proto__', '<<']);

/** One arbitrary per YAML key, each producing only valid values. */
const valid = {
  chunk_size: int(1, 4096).map((n) => n * 16),
  local_cpu: fc.boolean(),
  max_local_cpu_size: fc.double({ min: Number.MIN_VALUE, max: 65536, noNaN: true }),
  shrink_local_cpu_to_available: fc.boolean(),
  remote_url: fc.option(
    fc.tuple(fc.constantFrom(...REMOTE_SCHEMES), fc.domain(), int(1, 65535)).map(([s, h, p]) => `${s}://${h}:${p}`),
  ),
  remote_serde: fc.constantFrom('naive', 'lz4', 'lz4-shuffle'),
  save_unfull_chunk: fc.boolean(),
  blocking_timeout_secs: fc.double({ min: 0.001, max: 86400, noNaN: true }),
  valkey_mode: fc.constantFrom('single', 'cluster'),
  valkey_username: fc.option(nonEmpty),
  valkey_password: fc.option(nonEmpty),
  valkey_connections: int(1, 64),
  valkey_segment_bytes: int(65536, 67108864),
  key_prefix: fc.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/),
  ttl_secs: int(0, 2 ** 31 - 1),
  write_behind_queue_bytes: int(1, Number.MAX_SAFE_INTEGER),
  socket_path: fc.string({ minLength: 1, maxLength: 100 }),
  socket_mode: fc.oneof(int(0, 0o777), int(0, 0o777).map((n) => `0${n.toString(8)}`)),
  metrics_port: int(0, 65535),
  metrics_host: fc.stringMatching(/^[a-z0-9.:-]{1,30}$/),
  max_frame_bytes: int(4096, 2147483647),
  lease_ttl_ms: int(1, 2 ** 31 - 1),
  prefetch_window_mb: fc.option(int(1, 1 << 20)),
  prefetch_budget_mb: fc.option(int(1, 1 << 20)),
  idle_connection_timeout_ms: int(0, 2 ** 31 - 1),
  host_memory: fc.constantFrom('auto', 'native', 'heap'),
  log_level: fc.constantFrom('debug', 'info', 'warn', 'error'),
  extra_config: fc.dictionary(
    fc.string({ minLength: 1, maxLength: 12 }).filter((k) => !RESERVED.has(k)),
    fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 3 })),
    { maxKeys: 4 },
  ),
};

type Written = Partial<{ [K in keyof typeof valid]: (typeof valid)[K] extends fc.Arbitrary<infer T> ? T : never }>;

const camel = (k: string): keyof KvtierConfig => k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()) as keyof KvtierConfig;

describe('round trip', () => {
  it('loads back exactly the values any valid YAML file holds', () => {
    const defaults = loadConfig({ env: {} }).config;
    fc.assert(
      fc.property(fc.record(valid, { requiredKeys: [] }), (written: Written) => {
        const url = written.remote_url;
        if (/^valkeys?-cluster:\/\//.test(url ?? '') && written.valkey_mode === 'single') written.valkey_mode = 'cluster';
        const file = writeConfig(YAML.stringify(written, { version: '1.1' }));
        const { config } = loadConfig({ file, env: {} });
        const want: Record<string, unknown> = { ...defaults, extraConfig: {} };
        for (const [k, v] of Object.entries(written)) {
          want[camel(k)] = k === 'socket_mode' && typeof v === 'string' ? parseInt(v, 8) : v;
        }
        if (/^valkeys?-cluster:\/\//.test(url ?? '')) want.valkeyMode = 'cluster';
        expect(config).toEqual(want);
      }),
      { numRuns: 200 },
    );
  });
});
