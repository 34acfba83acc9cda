import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { loadConfig } from '../../src/config/load.js';
import { writeConfig } from './helpers.js';

/** Loads a one-line YAML file and returns the ConfigError message. */
function errorFor(yaml: string): { file: string; message: string } {
  const file = writeConfig(`${yaml}\n`);
  try {
    loadConfig({ file, env: {} });
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).code).toBe('KVT_CONFIG');
    return { file, message: (e as Error).message };
  }
  throw new Error(`no error for ${yaml}`);
}

describe('invalid values name key, value, what is allowed and where', () => {
  it.each([
    ['chunk_size: 100', 'chunk_size: 100', 'integer 16..65536, a multiple of 16'],
    ['chunk_size: 8', 'chunk_size: 8', 'integer 16..65536'],
    ['chunk_size: 256.5', 'chunk_size: 256.5', 'integer'],
    ['chunk_size: "12abc"', 'chunk_size: "12abc"', 'integer'],
    ['local_cpu: maybe', 'local_cpu: "maybe"', 'boolean (true/false, 1/0, yes/no)'],
    ['max_local_cpu_size: 0', 'max_local_cpu_size: 0', 'number > 0'],
    ['max_local_cpu_size: -1.5', 'max_local_cpu_size: -1.5', 'number > 0'],
    ['local_disk: "s3://bucket/x"', 'local_disk: "s3://bucket/x"', 'only file:// URLs name a local directory'],
    ['local_disk: "file://tmp/x"', 'local_disk: "file://tmp/x"', 'three slashes'],
    ['local_disk: relative/dir', 'local_disk: "relative/dir"', 'the path must be absolute'],
    ['max_local_disk_size: 0', 'max_local_disk_size: 0', 'number > 0'],
    ['disk_io_threads: 0', 'disk_io_threads: 0', 'integer 1..64'],
    ['disk_direct_io: sometimes', 'disk_direct_io: "sometimes"', 'auto, true or false'],
    ['remote_url: "lm://localhost:65432"', 'remote_url: "lm://localhost:65432"', 'valkey://, valkeys://, redis://, rediss://, valkey-cluster://, valkeys-cluster://'],
    ['remote_url: localhost:6379', 'remote_url: "localhost:6379"', 'URL with scheme'],
    ['remote_serde: torch', 'remote_serde: "torch"', 'one of naive, lz4, lz4-shuffle'],
    ['save_unfull_chunk: 2', 'save_unfull_chunk: 2', 'boolean'],
    ['blocking_timeout_secs: 0', 'blocking_timeout_secs: 0', 'number > 0'],
    ['valkey_mode: sentinel', 'valkey_mode: "sentinel"', 'one of single, cluster'],
    ['valkey_connections: 0', 'valkey_connections: 0', 'integer 1..64'],
    ['valkey_connections: 65', 'valkey_connections: 65', 'integer 1..64'],
    ['valkey_segment_bytes: 1024', 'valkey_segment_bytes: 1024', 'integer 65536..67108864'],
    ['key_prefix: "a b"', 'key_prefix: "a b"', '[A-Za-z0-9_.-]'],
    ['key_prefix: ""', 'key_prefix: ""', 'non-empty string'],
    ['ttl_secs: -1', 'ttl_secs: -1', 'integer 0..'],
    ['write_behind_queue_bytes: 0', 'write_behind_queue_bytes: 0', 'integer 1..'],
    [`socket_path: /${'x'.repeat(120)}`, 'socket_path: "/xxx', 'at most 107 bytes'],
    ['socket_mode: "0o1777"', 'socket_mode: "0o1777"', 'permission bits 0..0o777'],
    ['socket_mode: rw-------', 'socket_mode: "rw-------"', 'octal string'],
    ['metrics_port: 70000', 'metrics_port: 70000', 'integer 0..65535'],
    ['metrics_host: ""', 'metrics_host: ""', 'non-empty string'],
    ['max_frame_bytes: 1024', 'max_frame_bytes: 1024', 'integer 4096..2147483647'],
    ['lease_ttl_ms: 0', 'lease_ttl_ms: 0', 'integer 1..'],
    ['host_memory: gpu', 'host_memory: "gpu"', 'one of auto, native, heap'],
    ['log_level: trace', 'log_level: "trace"', 'one of debug, info, warn, error'],
    ['extra_config: [1, 2]', 'extra_config: [1,2]', 'mapping'],
    ['extra_config: {valkey_mode: ring}', 'extra_config.valkey_mode: "ring"', 'one of single, cluster'],
    ['chunk_size: null', 'chunk_size: null', 'integer 16..65536'],
  ])('%s', (yaml, named, allowed) => {
    const { file, message } = errorFor(yaml);
    expect(message).toContain(`${named}`);
    expect(message).toContain(`is not allowed (from ${file} line 1); expected `);
    expect(message).toContain(allowed);
  });

  it('says what is allowed for cachegen', () => {
    const { message } = errorFor('remote_serde: cachegen');
    expect(message).toMatch(/^remote_serde: "cachegen" is not allowed \(from .* line 1\); expected one of naive, lz4, lz4-shuffle; 'cachegen' is LMCache's GPU codec/);
  });

  it('asks to quote a mode that is not permission bits', () => {
    expect(errorFor('socket_mode: 660').message).toContain("660 (octal 0o1224) sets bits outside 0o777; write the mode quoted, like '0660'");
  });

  it('never prints a password', () => {
    const { message } = errorFor('valkey_password: 123456');
    expect(message).toContain('valkey_password: <hidden> is not allowed');
    expect(message).not.toContain('123456');
    const url = 'lm://user:hunter2@h:1';
    expect(() => loadConfig({ env: { KVTIER_REMOTE_URL: url } })).toThrow('lm://user:***@h:1');
    expect(() => loadConfig({ env: { KVTIER_REMOTE_URL: url } })).not.toThrow('hunter2');
  });

  it('refuses valkey_mode single with a valkey-cluster:// URL, naming both sources', () => {
    const file = writeConfig('valkey_mode: single\n');
    expect(() => loadConfig({ file, env: { KVTIER_REMOTE_URL: 'valkey-cluster://h:7000' } })).toThrow(
      `valkey_mode: "single" (from ${file} line 1) conflicts with remote_url "valkey-cluster://h:7000" (from environment KVTIER_REMOTE_URL)`,
    );
  });

  it('checks a file value even when env replaces it', () => {
    const file = writeConfig('chunk_size: 7\n');
    expect(() => loadConfig({ file, env: { KVTIER_CHUNK_SIZE: '256' } })).toThrow('chunk_size: 7');
  });
});

describe('valid edge values', () => {
  it.each([
    ["socket_mode: '0660'", { socketMode: 0o660 }],
    ["socket_mode: '660'", { socketMode: 0o660 }],
    ["socket_mode: '0o600'", { socketMode: 0o600 }],
    ['socket_mode: 384', { socketMode: 0o600 }],
    ['chunk_size: 16', { chunkSize: 16 }],
    ['chunk_size: 65536', { chunkSize: 65536 }],
    ['remote_url: valkey-cluster://h:7000', { remoteUrl: 'valkey-cluster://h:7000', valkeyMode: 'cluster' }],
    // Regression: the tier parsed valkeys-cluster:// and the docs named it, but the schema refused it.
    ['remote_url: valkeys-cluster://h:7000,h:7001', { remoteUrl: 'valkeys-cluster://h:7000,h:7001', valkeyMode: 'cluster' }],
    ['shrink_local_cpu_to_available: true', { shrinkLocalCpuToAvailable: true }],
    ['remote_url: valkeys://u:p@h:6380/2', { remoteUrl: 'valkeys://u:p@h:6380/2' }],
    ['remote_url: null', { remoteUrl: null }],
    ['remote_serde: lz4-shuffle', { remoteSerde: 'lz4-shuffle' }],
    ['max_local_cpu_size: 0.5', { maxLocalCpuSize: 0.5 }],
    ['log_level: WARN', { logLevel: 'warn' }],
    ['local_cpu: yes', { localCpu: true }],
  ])('%s', (yaml, want) => {
    const file = writeConfig(`${yaml}\n`);
    expect(loadConfig({ file, env: {} }).config).toMatchObject(want);
  });
});
