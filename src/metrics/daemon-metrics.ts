/**
 * The daemon's one prom-client registry (names in ./names.ts).
 *
 * Counters and gauges are read at scrape time from the plain numbers the
 * manager, host tier, write-behind queue and Valkey tier already keep
 * (collect callbacks), so a request never calls into prom-client for them;
 * only the three latency histograms are observed on the request path, once
 * per request, by ./instrument.ts. The registry also keeps the slow-op ring
 * and the count of workers with registered KV memory for `kvtier stats`.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ChunkManager } from '../manager/chunk-manager.js';
import type { DiskSyncStats } from '../manager/disk-sync.js';
import type { KvRegistrar } from '../protocol/connection.js';
import type { HostMemoryInfo } from '../tiers/host-memory.js';
import type { ValkeyTierCounters } from '../tiers/valkey-tier.js';
import { RequestCounters, instrumentManager } from './instrument.js';
import { LOOKUP_BUCKETS, METRICS, TRANSFER_BUCKETS, type MetricDef } from './names.js';
import { SlowOpRing, type SlowOp } from './slow-ops.js';

export interface MetricsSources {
  version: string;
  chunkSize: number;
  manager: ChunkManager;
  memory(): HostMemoryInfo;
  connections(): number;
  closedConnections(): { badFrame: number; idle: number };
}

/** What the metrics need of the remote tier: availability and ValkeyTier's counters. */
interface RemoteView {
  available: boolean;
  counters: ValkeyTierCounters | null;
}

type Values = Array<[Record<string, string>, number]>;

export class DaemonMetrics {
  readonly registry = new Registry();
  readonly requests = new RequestCounters();
  readonly ring = new SlowOpRing();
  #registered = 0;
  readonly #src: MetricsSources;

  constructor(src: MetricsSources) {
    this.#src = src;
    const m = src.manager;
    const reg = [this.registry];
    const histogram = <L extends string>(d: MetricDef, buckets: number[]): Histogram<L> =>
      new Histogram<L>({ name: d.name, help: d.help, labelNames: d.labels as L[], buckets, registers: reg });
    const lookup = histogram(METRICS.lookupSeconds, LOOKUP_BUCKETS);
    const store = histogram<'form'>(METRICS.storeSeconds, TRANSFER_BUCKETS);
    const retrieve = histogram<'form'>(METRICS.retrieveSeconds, TRANSFER_BUCKETS);
    instrumentManager(m, {
      counters: this.requests, ring: this.ring, lookup, store, retrieve, chunkSize: src.chunkSize,
      remoteAsked: () => m.remote !== null && m.remote.available !== false,
    });

    const counter = (d: MetricDef, read: () => Values | number): void => {
      new Counter({
        name: d.name, help: d.help, labelNames: [...d.labels], registers: reg,
        collect() {
          this.reset();
          const v = read();
          if (typeof v === 'number') this.inc(v);
          else for (const [labels, n] of v) this.inc(labels, n);
        },
      });
    };
    const gauge = (d: MetricDef, read: () => Values | number): void => {
      new Gauge({
        name: d.name, help: d.help, labelNames: [...d.labels], registers: reg,
        collect() {
          const v = read();
          if (typeof v === 'number') this.set(v);
          else for (const [labels, n] of v) this.set(labels, n);
        },
      });
    };
    const tiers = (host: number, valkey: number): Values => [[{ tier: 'host' }, host], [{ tier: 'valkey' }, valkey]];
    const c = m.counters;
    const r = this.requests;
    const vk = (): ValkeyTierCounters | null => this.#remote().counters;

    counter(METRICS.lookups, () => c.lookups);
    counter(METRICS.lookupTokens, () => tiers(r.lookupTokens, r.valkeyLookupTokens));
    counter(METRICS.hitTokens, () => tiers(r.hostHitTokens, r.valkeyHitTokens));
    counter(METRICS.missTokens, () => tiers(r.lookupTokens - r.hostHitTokens, r.valkeyLookupTokens - r.valkeyHitTokens));
    counter(METRICS.prefillTokensSaved, () => r.prefillTokensSaved);
    counter(METRICS.storedChunks, () => tiers(c.storedChunks, vk()?.stores ?? 0));
    counter(METRICS.storedBytes, () => tiers(c.storedBytes, vk()?.bytesOut ?? 0));
    counter(METRICS.retrievedChunks, () => tiers(c.retrievedChunks, vk()?.hits ?? 0));
    counter(METRICS.retrievedBytes, () => tiers(c.retrievedBytes, vk()?.bytesIn ?? 0));
    counter(METRICS.failedRetrieveChunks, () => c.failedRetrieveChunks);
    counter(METRICS.skippedStoreChunks, () => c.skippedChunks);
    counter(METRICS.requestErrors, () => Object.entries(r.errors).map(([op, n]): [Record<string, string>, number] => [{ op }, n]));

    gauge(METRICS.poolCapacityBytes, () => src.memory().capacityBytes);
    gauge(METRICS.poolUsedBytes, () => src.memory().usedBytes);
    gauge(METRICS.poolPageLocked, () => (src.memory().pinned ? 1 : 0));
    gauge(METRICS.hostChunks, () => m.host.stats().entries);
    gauge(METRICS.pinnedBytes, () => m.host.stats().pinnedBytes);
    gauge(METRICS.leases, () => m.leaseCount);
    counter(METRICS.evictions, () => m.host.stats().evictions);
    counter(METRICS.evictedBytes, () => m.host.stats().evictedBytes);

    gauge(METRICS.writeBehindQueueBytes, () => m.writeBehindStats().queuedBytes);
    gauge(METRICS.writeBehindQueueJobs, () => m.writeBehindStats().queuedJobs);
    gauge(METRICS.writeBehindInFlight, () => m.writeBehindStats().inFlight);
    counter(METRICS.writeBehindWritten, () => m.writeBehindStats().written);
    counter(METRICS.writeBehindFailed, () => m.writeBehindStats().failed);
    counter(METRICS.writeBehindDropped, () => m.writeBehindStats().dropped);

    const dk = (): DiskSyncStats | null => m.disk?.stats() ?? null;
    gauge(METRICS.diskConfigured, () => (m.disk !== null ? 1 : 0));
    gauge(METRICS.diskChunks, () => dk()?.entries ?? 0);
    gauge(METRICS.diskUsedBytes, () => dk()?.usedBytes ?? 0);
    gauge(METRICS.diskCapacityBytes, () => dk()?.capacityBytes ?? 0);
    counter(METRICS.diskWrittenChunks, () => dk()?.writes ?? 0);
    counter(METRICS.diskWrittenBytes, () => dk()?.writtenBytes ?? 0);
    counter(METRICS.diskHits, () => dk()?.hits ?? 0);
    counter(METRICS.diskReadBytes, () => dk()?.readBytes ?? 0);
    counter(METRICS.diskEvictions, () => dk()?.evictions ?? 0);
    counter(METRICS.diskEvictedBytes, () => dk()?.evictedBytes ?? 0);
    counter(METRICS.diskSkippedStores, () => [[{ reason: 'full' }, dk()?.skippedFull ?? 0], [{ reason: 'io_error' }, dk()?.ioErrors ?? 0], [{ reason: 'queue_full' }, dk()?.queue.dropped ?? 0]]);
    counter(METRICS.diskVerificationFailures, () => dk()?.corrupt ?? 0);

    gauge(METRICS.valkeyConfigured, () => (m.remote !== null ? 1 : 0));
    gauge(METRICS.valkeyUp, () => (this.#remote().available ? 1 : 0));
    counter(METRICS.valkeyReconnects, () => vk()?.reconnects ?? 0);
    counter(METRICS.valkeyErrors, () => vk()?.errors ?? 0);
    counter(METRICS.valkeyVerificationFailures, () => [[{ reason: 'corrupt' }, vk()?.corrupt ?? 0], [{ reason: 'incomplete' }, vk()?.incomplete ?? 0]]);
    counter(METRICS.valkeySlowSkipped, () => c.remoteSlowSkippedChunks);
    gauge(METRICS.valkeyReadRate, () => m.remotePace().readBytesPerS ?? 0);
    counter(METRICS.valkeySkippedStores, () => (vk()?.skipped ?? 0) + c.remoteSkippedDown);

    gauge(METRICS.connectedClients, () => src.connections());
    counter(METRICS.closedConnections, () => {
      const n = src.closedConnections();
      return [[{ reason: 'bad_frame' }, n.badFrame], [{ reason: 'idle' }, n.idle]];
    });
    gauge(METRICS.registeredWorkers, () => this.#registered);
    gauge(METRICS.up, () => [[{ version: src.version }, 1]]);
  }

  /** The registrar, counting registrations that are open (closed with their connection). */
  trackRegistrar(registrar: KvRegistrar | null): KvRegistrar | null {
    if (registrar === null) return null;
    return async (spec, chunkTokens, peer) => {
      const kv = await registrar(spec, chunkTokens, peer);
      this.#registered++;
      const close = kv.close.bind(kv);
      let closed = false;
      kv.close = async () => {
        if (!closed) {
          closed = true;
          this.#registered--;
        }
        await close();
      };
      return kv;
    };
  }

  get registeredWorkers(): number {
    return this.#registered;
  }

  slowOps(n = 5): SlowOp[] {
    return this.ring.slowest(n);
  }

  #remote(): RemoteView {
    const remote = this.#src.manager.remote;
    if (remote === null) return { available: false, counters: null };
    const counters = 'counters' in remote ? (remote.counters as ValkeyTierCounters) : null;
    return { available: remote.available !== false, counters };
  }
}
