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
import { ChunkManager, type RemoteTier } from './manager/chunk-manager.js';
import { DiskSync, type DiskSyncStats } from './manager/disk-sync.js';
import { DaemonMetrics } from './metrics/daemon-metrics.js';
import { MetricsServer } from './metrics/http-server.js';
import type { SlowOp } from './metrics/slow-ops.js';
import type { KvRegistrar } from './protocol/connection.js';
import type { PeerCredentials } from './protocol/peer.js';
import { SocketServer } from './protocol/server.js';
import { HeapMemory, type HostMemory, type HostMemoryInfo } from './tiers/host-memory.js';
import { fitHostCapacity, memAvailableBytes } from './tiers/host-fit.js';
import { HostTier } from './tiers/host-tier.js';

import { VERSION } from './package-info.js';

export { VERSION };

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

export interface DaemonStats {
  version: string;
  uptimeSeconds: number;
  socket: string;
  connections: number;
  leases: number;
  memory: ReturnType<HostMemory['info']>;
  host: ReturnType<HostTier['stats']>;
  writeBehind: ReturnType<ChunkManager['writeBehindStats']>;
  /** The disk tier (local_disk), or null when not configured. */
  disk: DiskSyncStats | null;
  counters: Record<string, number>;
  lookupLatencyUs: { p50: number; p99: number; max: number };
  /** The slowest of the last 512 lookups/stores/retrieves, slowest first. */
  slowOps: SlowOp[];
  registeredWorkers: number;
  /** Connections the daemon closed itself: broken framing, idle past idle_connection_timeout_ms. */
  closedConnections: { badFrame: number; idle: number };
  /** Prompt tokens looked up and found per tier, and tokens handed back by Retrieve. */
  tokens: { lookup: number; hostHit: number; valkeyLookup: number; valkeyHit: number; prefillSaved: number };
  remote: { configured: boolean; available: boolean; detail: Record<string, unknown> | null; pace: ReturnType<ChunkManager['remotePace']> };
  native: { loaded: boolean; detail: string };
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
    writeBehindConcurrency: Math.max(2, config.valkeyConnections * 2),
    logger: log,
    recomputeTokensPerS: config.recomputeTokensPerS,
  });
  let server: SocketServer;
  const metrics = new DaemonMetrics({ version: VERSION, chunkSize: config.chunkSize, manager, memory: () => memory.info(), connections: () => server.connectionCount, closedConnections: () => server.closedConnections });
  const nativeMod = native.mod;
  const registrar: KvRegistrar | null = metrics.trackRegistrar(nativeMod === null ? null : async (spec, chunkTokens, peer) => {
    // Without the peer's uid there is no owner to check files against: refuse.
    if (peer === null) throw new ForbiddenError('the connecting process could not be identified (SO_PEERCRED): RegisterKv is refused');
    const kv = new nativeMod.RegisteredKv({
      regions: (spec.regions ?? []).map((r) => ({
        regionId: r.regionId ?? 0,
        sizeBytes: Number(r.sizeBytes ?? 0),
        shmPath: r.shmPath ?? undefined,
        cudaIpcHandle: r.cudaIpcHandle != null && r.cudaIpcHandle.length > 0 ? r.cudaIpcHandle : undefined,
        deviceIndex: r.deviceIndex ?? 0,
      })),
      planes: (spec.planes ?? []).map((p) => ({
        layer: p.layer ?? 0,
        regionId: p.regionId ?? 0,
        offset: Number(p.offset ?? 0),
        blockStride: Number(p.blockStride ?? 0),
        blockBytes: Number(p.blockBytes ?? 0),
      })),
      numBlocks: spec.numBlocks ?? 0,
      blockSize: spec.blockSize ?? 0,
      chunkTokens,
    }, { ownerUid: peer.uid });
    return kv;
  });

  const stats = (): DaemonStats => {
    const ns = [...manager.counters.lookupNs].filter((v) => v > 0).sort((a, b) => a - b);
    const pick = (q: number): number => (ns.length === 0 ? 0 : Math.round(ns[Math.min(ns.length - 1, Math.floor(q * ns.length))] / 1000));
    const c = manager.counters;
    const counters: Record<string, number> = {};
    for (const [k, v] of Object.entries(c)) if (typeof v === 'number') counters[k] = v;
    const remoteDetail = remote !== null && 'stats' in remote && typeof remote.stats === 'function' ? (remote.stats as () => Record<string, unknown>)()
      : remote !== null && 'counters' in remote ? { ...(remote.counters as object) } : null;
    return {
      version: VERSION,
      uptimeSeconds: Math.round((Date.now() - started) / 1000),
      socket: config.socketPath,
      connections: server.connectionCount,
      leases: manager.leaseCount,
      memory: memory.info(),
      host: host.stats(),
      writeBehind: manager.writeBehindStats(),
      disk: disk?.stats() ?? null,
      counters,
      lookupLatencyUs: { p50: pick(0.5), p99: pick(0.99), max: pick(1) },
      slowOps: metrics.slowOps(),
      registeredWorkers: metrics.registeredWorkers,
      closedConnections: { ...server.closedConnections },
      tokens: { lookup: metrics.requests.lookupTokens, hostHit: metrics.requests.hostHitTokens, valkeyLookup: metrics.requests.valkeyLookupTokens, valkeyHit: metrics.requests.valkeyHitTokens, prefillSaved: metrics.requests.prefillTokensSaved },
      remote: { configured: remote !== null, available: remote !== null && remote.available !== false, detail: remoteDetail, pace: manager.remotePace() },
      native: { loaded: native.mod !== null, detail: native.detail },
    };
  };
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
