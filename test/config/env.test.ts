import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { writeConfig } from './helpers.js';

describe('environment', () => {
  it('parses KVTIER_ values per type', () => {
    const { config } = loadConfig({
      env: {
        KVTIER_CHUNK_SIZE: '512',
        KVTIER_LOCAL_CPU: 'No',
        KVTIER_MAX_LOCAL_CPU_SIZE: '2.5',
        KVTIER_REMOTE_URL: 'rediss://cache:6380',
        KVTIER_SAVE_UNFULL_CHUNK: 'TRUE',
        KVTIER_SOCKET_MODE: '0660',
        KVTIER_LOG_LEVEL: 'WARNING',
      },
    });
    expect(config).toMatchObject({
      chunkSize: 512, localCpu: false, maxLocalCpuSize: 2.5, remoteUrl: 'rediss://cache:6380',
      saveUnfullChunk: true, socketMode: 0o660, logLevel: 'warn',
    });
  });

  it.each([
    ['1', true], ['0', false], ['yes', true], ['no', false], ['True', true], ['FALSE', false],
  ])('reads boolean %s', (v, want) => {
    expect(loadConfig({ env: { KVTIER_LOCAL_CPU: v, KVTIER_REMOTE_URL: 'valkey://h:1' } }).config.localCpu).toBe(want);
  });

  it('honours LMCACHE_ names when the KVTIER_ one is absent', () => {
    const env = { LMCACHE_CHUNK_SIZE: '128', LMCACHE_REMOTE_URL: 'valkey://a:1', KVTIER_REMOTE_URL: 'valkey://b:2' };
    const { config } = loadConfig({ env });
    expect(config.chunkSize).toBe(128);
    expect(config.remoteUrl).toBe('valkey://b:2');
  });

  it('applies defaults < file < env < overrides', () => {
    const file = writeConfig('chunk_size: 32\nmetrics_port: 1000\nsocket_path: /f.sock\nttl_secs: 5\n');
    const env = { KVTIER_METRICS_PORT: '2000', LMCACHE_SOCKET_PATH: '/e.sock', KVTIER_TTL_SECS: '6' };
    const { config } = loadConfig({ file, env, overrides: { socket_path: '/o.sock', ttl_secs: undefined } });
    expect(config.chunkSize).toBe(32); // file
    expect(config.metricsPort).toBe(2000); // env over file
    expect(config.socketPath).toBe('/o.sock'); // override over env (LMCACHE_ fallback) over file
    expect(config.ttlSecs).toBe(6); // an undefined override is no override
    expect(config.leaseTtlMs).toBe(30000); // default
  });

  it('lets env beat the file even through extra_config', () => {
    const file = writeConfig('remote_url: valkey://h:1\nextra_config: {valkey_mode: cluster, knob: 1}\n');
    const env = { KVTIER_EXTRA_CONFIG: '{"valkey_mode": "single", "other": true}' };
    const { config } = loadConfig({ file, env });
    expect(config.valkeyMode).toBe('single');
    expect(config.extraConfig).toEqual({ valkey_mode: 'single', knob: 1, other: true });
  });

  it('ignores an empty variable, except that a nullable key becomes null', () => {
    const file = writeConfig('remote_url: valkey://h:1\nchunk_size: 64\n');
    const { config } = loadConfig({ file, env: { KVTIER_REMOTE_URL: '', KVTIER_CHUNK_SIZE: '' } });
    expect(config.remoteUrl).toBeNull();
    expect(config.chunkSize).toBe(64);
  });

  it('rejects numbers with trailing junk, naming the variable', () => {
    expect(() => loadConfig({ env: { KVTIER_CHUNK_SIZE: '12abc' } })).toThrow(
      'chunk_size: "12abc" is not allowed (from environment KVTIER_CHUNK_SIZE); expected integer 16..65536, a multiple of 16',
    );
    expect(() => loadConfig({ env: { LMCACHE_MAX_LOCAL_CPU_SIZE: '5GB' } })).toThrow('environment LMCACHE_MAX_LOCAL_CPU_SIZE');
  });

  it('warns about KVTIER_ typos, renamed and unimplemented names, and leaves other KVTIER_ vars alone', () => {
    const { config, warnings } = loadConfig({
      env: { KVTIER_CHUNKSIZE: '1', KVTIER_TEST_VALKEY_URL: 'x', LMCACHE_LOCAL_DEVICE: 'cpu', KVTIER_SOCKET: '/a.sock' },
    });
    expect(config.socketPath).toBe('/a.sock');
    expect(warnings).toEqual([
      'KVTIER_SOCKET (environment) was renamed: use KVTIER_SOCKET_PATH instead (value applied)',
      'local_device (environment LMCACHE_LOCAL_DEVICE) is an LMCache option kvtier does not implement; ignored',
      'environment KVTIER_CHUNKSIZE is not a kvtier setting; ignored; did you mean KVTIER_CHUNK_SIZE?',
    ]);
  });

  it('reads process.env when no env is given', () => {
    process.env.KVTIER_KEY_PREFIX = 'from-process-env';
    try {
      expect(loadConfig().config.keyPrefix).toBe('from-process-env');
    } finally {
      delete process.env.KVTIER_KEY_PREFIX;
    }
  });
});

describe('overrides', () => {
  it('refuse an unknown key, suggesting the nearest', () => {
    expect(() => loadConfig({ env: {}, overrides: { sockt_path: '/x' } })).toThrow('unknown override key sockt_path; did you mean socket_path?');
  });

  it('accept strings from CLI flags and typed values alike', () => {
    const { config } = loadConfig({ env: {}, overrides: { metrics_port: '9464', local_cpu: false, socket_mode: '0660' } });
    expect(config).toMatchObject({ metricsPort: 9464, localCpu: false, socketMode: 0o660 });
  });
});
