import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { loadConfig } from '../../src/config/load.js';
import { writeConfig } from './helpers.js';

describe('YAML file', () => {
  it('reads kvtier keys and reports the source', () => {
    const file = writeConfig(
      'chunk_size: 512\nsocket_path: /run/kv.sock\nmetrics_port: 9464\nlog_level: debug\nttl_secs: 3600\n',
    );
    const { config, warnings, source } = loadConfig({ file, env: {} });
    expect(source).toBe(file);
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({ chunkSize: 512, socketPath: '/run/kv.sock', metricsPort: 9464, logLevel: 'debug', ttlSecs: 3600 });
    expect(config.localCpu).toBe(true);
  });

  it('reads an LMCache config file as it is', () => {
    const file = writeConfig(
      [
        'chunk_size: 256',
        'local_cpu: true',
        'max_local_cpu_size: 5.0',
        'remote_url: "valkey://localhost:6379"',
        'remote_serde: "naive"',
        'extra_config:',
        '  valkey_mode: cluster',
        '  valkey_username: alice',
        '  password: s3cret',
        '  some_backend_knob: 7',
      ].join('\n'),
    );
    const { config, warnings } = loadConfig({ file, env: {} });
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({
      chunkSize: 256,
      localCpu: true,
      maxLocalCpuSize: 5,
      remoteUrl: 'valkey://localhost:6379',
      remoteSerde: 'naive',
      valkeyMode: 'cluster',
      valkeyUsername: 'alice',
      valkeyPassword: 's3cret',
    });
    expect(config.extraConfig).toEqual({ valkey_mode: 'cluster', valkey_username: 'alice', password: 's3cret', some_backend_knob: 7 });
  });

  it('lets a top-level key beat the same setting in extra_config', () => {
    const file = writeConfig('remote_url: valkey://h:1\nvalkey_mode: single\nextra_config: {valkey_mode: cluster}\n');
    expect(loadConfig({ file, env: {} }).config.valkeyMode).toBe('single');
  });

  it('takes the file from KVTIER_CONFIG_FILE, then LMCACHE_CONFIG_FILE', () => {
    const a = writeConfig('chunk_size: 32\n');
    const b = writeConfig('chunk_size: 64\n');
    expect(loadConfig({ env: { LMCACHE_CONFIG_FILE: b } }).config.chunkSize).toBe(64);
    expect(loadConfig({ env: { KVTIER_CONFIG_FILE: a, LMCACHE_CONFIG_FILE: b } }).config.chunkSize).toBe(32);
    expect(loadConfig({ file: b, env: { KVTIER_CONFIG_FILE: a } }).config.chunkSize).toBe(64);
  });

  it('treats an empty file as all defaults', () => {
    const file = writeConfig('# nothing here\n');
    expect(loadConfig({ file, env: {} }).config.chunkSize).toBe(256);
  });

  it('reads an unquoted 0660 as octal, like PyYAML', () => {
    const file = writeConfig('socket_mode: 0660\n');
    expect(loadConfig({ file, env: {} }).config.socketMode).toBe(0o660);
  });

  it('loads the bundled example config with no warnings', () => {
    const { config, warnings } = loadConfig({ file: resolve('config/example.yaml'), env: {} });
    expect(warnings).toEqual([]);
    expect(config.remoteUrl).toBeNull();
    expect(config.localCpu).toBe(true);
  });
});

describe('file errors', () => {
  it('names a missing file', () => {
    const missing = resolve('/nonexistent/dir/kvtier.yaml');
    expect(() => loadConfig({ file: missing, env: {} })).toThrow(ConfigError);
    expect(() => loadConfig({ file: missing, env: {} })).toThrow(`config file ${missing} (--config): not found`);
    expect(() => loadConfig({ env: { KVTIER_CONFIG_FILE: missing } })).toThrow('KVTIER_CONFIG_FILE');
  });

  it('gives the file and line of a YAML syntax error', () => {
    const file = writeConfig('chunk_size: 256\nlocal_cpu: [true\nremote_url: x\n');
    expect(() => loadConfig({ file, env: {} })).toThrow(new RegExp(`config file ${file} line \\d+, column \\d+: YAML error`));
  });

  it('refuses duplicate keys with their line', () => {
    const file = writeConfig('chunk_size: 256\nchunk_size: 512\n');
    expect(() => loadConfig({ file, env: {} })).toThrow(`${file} line 2`);
  });

  it('refuses a top level that is not a mapping', () => {
    const file = writeConfig('- a\n- b\n');
    expect(() => loadConfig({ file, env: {} })).toThrow('top level must be a mapping');
  });

  it('names the file and line of a bad value', () => {
    const file = writeConfig('local_cpu: true\nchunk_size: 100\n');
    expect(() => loadConfig({ file, env: {} })).toThrow(
      `chunk_size: 100 is not allowed (from ${file} line 2); expected integer 16..65536, a multiple of 16`,
    );
  });
});

describe('warnings', () => {
  it('names an unknown key and the nearest known one', () => {
    const file = writeConfig('chunk_sise: 256\nfrobnicate: 1\n');
    const { warnings } = loadConfig({ file, env: {} });
    expect(warnings).toEqual([
      `unknown config key chunk_sise (${file} line 1) ignored; did you mean chunk_size?`,
      `unknown config key frobnicate (${file} line 2) ignored`,
    ]);
  });

  it('warns about LMCache options kvtier does not implement', () => {
    const file = writeConfig('local_device: cpu\nenable_p2p: false\nuse_layerwise: true\n');
    const { warnings } = loadConfig({ file, env: {} });
    expect(warnings).toHaveLength(3);
    expect(warnings[0]).toBe(`local_device (${file} line 1) is an LMCache option kvtier does not implement; ignored`);
    expect(warnings.every((w) => w.endsWith('is an LMCache option kvtier does not implement; ignored'))).toBe(true);
  });

  it("takes LMCache's local_disk and max_local_disk_size without a warning", () => {
    const file = writeConfig('local_disk: "file:///tmp/x/"\nmax_local_disk_size: 5\n');
    const { config, warnings } = loadConfig({ file, env: {} });
    expect(warnings).toEqual([]);
    expect(config.localDisk).toBe('/tmp/x');
    expect(config.maxLocalDiskSize).toBe(5);
  });

  it('applies a renamed key and says what to use instead', () => {
    const file = writeConfig('socket: /run/old.sock\n');
    const { config, warnings } = loadConfig({ file, env: {} });
    expect(config.socketPath).toBe('/run/old.sock');
    expect(warnings).toEqual([`socket (${file} line 1) was renamed: use socket_path instead (value applied)`]);
  });

  it('prefers the new key when both old and new are given', () => {
    const file = writeConfig('socket: /run/old.sock\nsocket_path: /run/new.sock\n');
    expect(loadConfig({ file, env: {} }).config.socketPath).toBe('/run/new.sock');
  });

  it('warns when valkey_mode cluster has no remote_url', () => {
    const file = writeConfig('extra_config: {valkey_mode: cluster}\n');
    expect(loadConfig({ file, env: {} }).warnings[0]).toMatch(/valkey_mode cluster .* has no effect/);
  });

  it('keeps unknown extra_config sub-keys without warning', () => {
    const file = writeConfig('extra_config:\n  anything: [1, 2]\n');
    const { config, warnings } = loadConfig({ file, env: {} });
    expect(warnings).toEqual([]);
    expect(config.extraConfig).toEqual({ anything: [1, 2] });
  });
});
