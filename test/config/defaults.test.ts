import { describe, expect, it } from 'vitest';
import { configTable, loadConfig } from '../../src/config/load.js';

describe('defaults', () => {
  it('gives every documented default with no file and no env', () => {
    const { config, warnings, source } = loadConfig({ env: {} });
    expect(source).toBeNull();
    expect(warnings).toEqual([]);
    expect(config).toEqual({
      chunkSize: 256,
      localCpu: true,
      maxLocalCpuSize: 5,
      shrinkLocalCpuToAvailable: false,
      localDisk: null,
      maxLocalDiskSize: 5,
      diskIoThreads: 4,
      diskDirectIo: 'auto',
      remoteUrl: null,
      remoteSerde: 'naive',
      saveUnfullChunk: false,
      blockingTimeoutSecs: 10,
      valkeyMode: 'single',
      valkeyUsername: null,
      valkeyPassword: null,
      valkeyTlsCaFile: null,
      valkeyTlsInsecure: false,
      valkeyConnections: 4,
      valkeyDataPath: 'auto',
      valkeySegmentBytes: 1048576,
      keyPrefix: 'kvtier',
      ttlSecs: 0,
      writeBehindQueueBytes: 1073741824,
      pinBudgetBytes: 1073741824,
      socketPath: '/tmp/kvtier.sock',
      socketMode: 0o600,
      metricsPort: 0,
      metricsHost: '127.0.0.1',
      maxFrameBytes: 268435456,
      leaseTtlMs: 30000,
      prefetchWindowMb: null,
      prefetchBudgetMb: null,
      chainMemoMb: 32,
      idleConnectionTimeoutMs: 0,
      recomputeTokensPerS: null,
      hostMemory: 'auto',
      logLevel: 'info',
      extraConfig: {},
    });
  });

  it('does not share the extra_config object between loads', () => {
    const a = loadConfig({ env: {} }).config;
    a.extraConfig.x = 1;
    expect(loadConfig({ env: {} }).config.extraConfig).toEqual({});
  });

  it('has one table row per key, with env names and LMCache aliases', () => {
    const rows = configTable();
    expect(rows).toHaveLength(38);
    expect(new Set(rows.map((r) => r.key)).size).toBe(38);
    expect(rows.find((r) => r.key === 'chunk_size')).toMatchObject({
      env: 'KVTIER_CHUNK_SIZE', lmcacheAlias: 'chunk_size', default: '256',
    });
    expect(rows.find((r) => r.key === 'socket_mode')?.default).toBe("'0600'");
    expect(rows.find((r) => r.key === 'valkey_mode')?.lmcacheAlias).toBe('extra_config.valkey_mode');
  });
});
