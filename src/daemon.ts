/**
 * kvtierd: builds the daemon from a config and runs it.
 *
 *   config ─► host memory (native pinned pool, or heap) ─► HostTier ─┐
 *          ─► disk tier (local_disk, when set; needs the addon) ─────┤
 *          ─► remote tier (Valkey, when remote_url is set) ──────────┼─► ChunkManager ─► SocketServer
 *          ─► native KV registrar (block-form Store/Retrieve) ───────┘
 *
 * The native addon is optional at run time: without it the daemon serves
 * inline transfers from heap memory and says so in its log and in stats.
 * The native pool is checked against MemAvailable (host-fit.ts), mapped,
 * and warmed in the background: the socket listens at once, stores skip
 * (counted) until their bytes are ready, stats show bytes ready of total.
 */
import type { KvtierConfig } from './config/load.js';
import { ConfigError, ForbiddenError, errorMessage } from './errors.js';
import type { Logger } from './log.js';
import type { ChainFn } from './chunking/prefix-hash.js';
import type { ChainMemoStats } from '../native/index.js';
import { ChunkManager } from './manager/chunk-manager.js';
import { DiskSync } from './manager/disk-sync.js';
import type { RemoteTier } from './tiers/tier.js';
import { DaemonMetrics } from './metrics/daemon-metrics.js';
import { daemonStats, type DaemonStats } from './metrics/daemon-stats.js';
import { MetricsServer } from './metrics/http-server.js';
import type { KvRegistrar } from './protocol/dispatch.js';
import type { PeerCredentials } from './protocol/peer.js';
import { SocketServer } from './protocol/server.js';
import { HeapMemory, type HostMemory, type HostMemoryInfo } from './tiers/host-memory.js';
import { fitHostCapacity, memAvailableBytes } from './tiers/host-fit.js';
import { HostTier } from './tiers/host-tier.js';
import { prefetchBudgetBytes } from './manager/prefetch-budget.js';
import { prefetchWindowBytes } from './manager/prefetch-window.js';

import { VERSION } from './package-info.js';

export { VERSION };
export type { DaemonStats };

export interface DaemonOptions {
  config: KvtierConfig;
  logger: Logger;
  /** A remote tier built by the caller (tests); otherwise built from config.remoteUrl. */
  remote?: RemoteTier | null;
}

export interface Daemon {
  readonly config: KvtierConfig;
  readonly manager: ChunkManager;
  readonly server: SocketServer;
  readonly metrics: DaemonMetrics;
  /** http://host:port/metrics when metrics_port > 0, else null. */
  readonly metricsUrl: string | null;
  stats(): DaemonStats;
  /** Resolves once the host pool is warm (the daemon serves before that). */
  whenWarm(): Promise<HostMemoryInfo>;
  close(): Promise<void>;
}

interface NativeModule {
  NativePool: new (bytes: number, options: { background: boolean }) => HostMemory;
  tuneMalloc(): boolean;
  RegisteredKv: new (spec: import('../native/index.js').KvLayoutSpec, options?: import('../native/index.js').RegisteredKvOptions) => import('../native/index.js').RegisteredKv;
  nativeInfo(): { backend: string; reason: string };
  peerCredentials(fd: number): PeerCredentials;
}

async function loadNative(log: Logger): Promise<{ mod: NativeModule | null; detail: string }> {
  try {
    const mod = (await import('../native/index.js')) as unknown as NativeModule;
    const info = mod.nativeInfo();
    if (!mod.tuneMalloc()) log.warn('glibc did not take the malloc settings: large Buffers will be page-faulted afresh');
    return { mod, detail: `backend ${info.backend}: ${info.reason}` };
  } catch (e) {
    log.warn('native addon unavailable: heap memory and inline transfers only', { error: errorMessage(e) });
    return { mod: null, detail: errorMessage(e) };
  }
}

/**
 * The addon's prefix-hash chain with its memo sized to chain_memo_mb, or
 * null (the JavaScript chain) where the addon does not load; also with
 * host_memory: heap, which does not load it for memory.
 */
async function loadChain(memoMb: number): Promise<{ fn: ChainFn; memo: () => ChainMemoStats } | null> {
  return import('../native/index.js').then((m) => {
    if (!m.nativeAvailable()) return null;
    m.setChainMemo(memoMb * 1024 * 1024);
    return { fn: m.chainHashes, memo: m.chainMemoStats };
  }, () => null);
}

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const { config, logger: log } = opts;
  const started = Date.now();
  const native = config.hostMemory === 'heap' ? { mod: null, detail: 'host_memory: heap' } : await loadNative(log);
  let capacity = Math.floor(config.maxLocalCpuSize * 1024 ** 3);
  let memory: HostMemory;
  if (native.mod !== null) {
    const fit = fitHostCapacity(capacity, { shrink: config.shrinkLocalCpuToAvailable, memAvailable: memAvailableBytes(), sizeGb: config.maxLocalCpuSize });
    if (fit.warning !== null) log.warn(fit.warning);
    capacity = fit.bytes;
    memory = new native.mod.NativePool(capacity, { background: true });
  } else if (config.hostMemory === 'native') {
    throw new Error(`host_memory: native was asked for, but the addon did not load: ${native.detail}`);
  } else {
    memory = new HeapMemory(capacity);
  }
  const host = new HostTier(memory);
  let disk: DiskSync | null;
  try {
    disk = await buildDisk(config, host, native.mod !== null, log);
  } catch (e) {
    memory.close();
    throw e;
  }
  const chain = await loadChain(config.chainMemoMb);
  const remote = opts.remote !== undefined ? opts.remote : await buildRemote(config, log);
  const manager = new ChunkManager({
    chunkSize: config.chunkSize,
    saveUnfullChunk: config.saveUnfullChunk,
    leaseTtlMs: config.leaseTtlMs,
    localCpu: config.localCpu,
    host,
    remote,
    disk,
    writeBehindQueueBytes: config.writeBehindQueueBytes,
    pinBudgetBytes: config.pinBudgetBytes,
    prefetchWindowBytes: prefetchWindowBytes(config.prefetchWindowMb, capacity),
    prefetchBudgetBytes: prefetchBudgetBytes(config.prefetchBudgetMb, capacity),
    writeBehindConcurrency: Math.max(2, config.valkeyConnections * 2),
    logger: log,
    recomputeTokensPerS: config.recomputeTokensPerS,
    chain: chain?.fn ?? null,
  });
  let server: SocketServer;
  const metrics = new DaemonMetrics({ version: VERSION, manager, memory: () => memory.info(), connections: () => server.connectionCount, closedConnections: () => server.closedConnections, chainMemo: chain?.memo ?? null });
  const nativeMod = native.mod;
  const registrar: KvRegistrar | null = nativeMod === null ? null : async (layout, peer) => {
    // Without the peer's uid there is no owner to check files against: refuse.
    if (peer === null) throw new ForbiddenError('the connecting process could not be identified (SO_PEERCRED): RegisterKv is refused');
    return new nativeMod.RegisteredKv(layout, { ownerUid: peer.uid });
  };
  const stats = (): DaemonStats => daemonStats({
    version: VERSION, socket: config.socketPath, started, manager, memory, requests: metrics.requests,
    connections: () => server.connectionCount, closedConnections: () => server.closedConnections,
    native: { loaded: native.mod !== null, detail: native.detail },
    chainMemo: chain?.memo ?? null,
  });
  server = new SocketServer({
    path: config.socketPath,
    mode: config.socketMode,
    logger: log,
    peerReader: nativeMod === null ? null : (fd) => nativeMod.peerCredentials(fd),
    context: {
      manager,
      chunkSize: config.chunkSize,
      maxFrameBytes: config.maxFrameBytes,
      maxChunkBytes: Math.min(config.maxFrameBytes - 4096, capacity),
      saveUnfullChunk: config.saveUnfullChunk,
      serverVersion: VERSION,
      registrar,
      observer: metrics.requests,
      idleTimeoutMs: config.idleConnectionTimeoutMs,
      logger: log,
      statsJson: () => JSON.stringify(stats()),
    },
  });
  let metricsServer: MetricsServer | null = null;
  try {
    await server.listen();
    if (config.metricsPort > 0) metricsServer = await MetricsServer.listen(metrics.registry, config.metricsPort, config.metricsHost);
  } catch (e) {
    await server.close();
    await manager.close();
    memory.close();
    throw e;
  }
  log.info('kvtierd serving', {
    socket: config.socketPath,
    hostBytes: memory.capacityBytes,
    memory: memory.info().detail,
    remote: remote === null ? 'none' : 'valkey',
    disk: disk === null ? 'none' : `${disk.disk.dir} (${disk.disk.stats().entries} chunks, ${disk.disk.direct ? 'O_DIRECT' : 'page cache'})`,
    native: native.detail,
    metrics: metricsServer?.url ?? 'off',
  });
  const warmStart = Date.now();
  memory.whenWarm().then((info) => {
    if (closing !== null) return;
    const fields = { hostBytes: info.capacityBytes, lockedBytes: info.lockedBytes, ms: Date.now() - warmStart, memory: info.detail };
    if (info.pinned || info.kind === 'heap') log.info('host pool warm', fields);
    else log.warn('host pool warm but not page-locked: serving from swappable memory', fields);
  }, (e: unknown) => log.error('host pool warming failed', { error: errorMessage(e) }));
  let closing: Promise<void> | null = null;
  return {
    config,
    manager,
    server,
    metrics,
    metricsUrl: metricsServer?.url ?? null,
    stats,
    whenWarm: () => memory.whenWarm(),
    close: () => {
      closing ??= (async () => {
        await metricsServer?.close();
        await server.close();
        await manager.close();
        memory.close();
      })();
      return closing;
    },
  };
}

/** The disk tier when local_disk is set: its directory checked, locked and indexed (ConfigError, DiskLockedError: exit 2). */
async function buildDisk(config: KvtierConfig, host: HostTier, nativeLoaded: boolean, log: Logger): Promise<DiskSync | null> {
  if (config.localDisk === null) return null;
  if (!nativeLoaded) {
    throw new ConfigError(`local_disk: ${config.localDisk} needs the native addon (its file I/O runs there), which did not load (or host_memory is heap)`);
  }
  const { DiskTier } = await import('./tiers/disk-tier.js');
  const tier = await DiskTier.open({
    dir: config.localDisk,
    capacityBytes: Math.floor(config.maxLocalDiskSize * 1024 ** 3),
    ioThreads: config.diskIoThreads,
    direct: config.diskDirectIo,
    logger: log,
  });
  const s = tier.stats();
  log.info('disk tier ready', { dir: s.dir, chunks: s.entries, usedBytes: s.usedBytes, capacityBytes: s.capacityBytes, direct: s.direct, corruptDeleted: s.corrupt, tempDeleted: s.removedTemp });
  return new DiskSync({ host, disk: tier, queueBytes: config.writeBehindQueueBytes, concurrency: config.diskIoThreads * 2, logger: log });
}

async function buildRemote(config: KvtierConfig, log: Logger): Promise<RemoteTier | null> {
  if (config.remoteUrl === null) return null;
  const { createRemoteTier } = await import('./tiers/remote-from-config.js');
  return createRemoteTier(config, log);
}
