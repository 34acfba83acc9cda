/**
 * The daemon's one prom-client registry (names in ./names.ts).
 *
 * Counters and gauges are read at scrape time from the plain numbers the
 * manager, host tier, write-behind queue and Valkey tier already keep
 * (collect callbacks), so a request never calls into prom-client for them.
 * The three latency histograms are observed once per request by
 * ./request-metrics.ts, which the protocol dispatcher reports to.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ChunkManager } from '../manager/chunk-manager.js';
import type { DiskSyncStats } from '../manager/disk-sync.js';
import { missReasons } from './miss-reasons.js';
import type { HostMemoryInfo } from '../tiers/host-memory.js';
import { LOOKUP_BUCKETS, METRICS, TRANSFER_BUCKETS, type MetricDef } from './names.js';
import { remoteView } from './remote-view.js';
import { RequestMetrics } from './request-metrics.js';
import type { ChainMemoStats } from '../../native/index.js';

export interface MetricsSources {
  version: string;
  manager: ChunkManager;
  memory(): HostMemoryInfo;
  connections(): number;
  closedConnections(): { badFrame: number; idle: number };
  /** The native chain's memo counts; null with the JavaScript chain. */
  chainMemo: (() => ChainMemoStats) | null;
}

type Values = Array<[Record<string, string>, number]>;

export class DaemonMetrics {
  readonly registry = new Registry();
  /** The dispatcher's observer. */
  readonly requests: RequestMetrics;

  constructor(src: MetricsSources) {
    const m = src.manager;
    const reg = [this.registry];
    const histogram = <L extends string>(d: MetricDef, buckets: number[]): Histogram<L> =>
      new Histogram<L>({ name: d.name, help: d.help, labelNames: d.labels as L[], buckets, registers: reg });
    this.requests = new RequestMetrics({
      lookup: histogram(METRICS.lookupSeconds, LOOKUP_BUCKETS),
      store: histogram<'form'>(METRICS.storeSeconds, TRANSFER_BUCKETS),
      retrieve: histogram<'form'>(METRICS.retrieveSeconds, TRANSFER_BUCKETS),
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
    const remote = () => remoteView(m.remote);
    const vk = () => remote().counters;

    counter(METRICS.lookups, () => c.lookups);
    counter(METRICS.lookupTokens, () => tiers(c.lookupTokens, c.remoteLookupTokens));
    counter(METRICS.hitTokens, () => tiers(c.hostHitTokens, c.remoteHitTokens));
    counter(METRICS.missTokens, () => tiers(c.lookupTokens - c.hostHitTokens, c.remoteLookupTokens - c.remoteHitTokens));
    counter(METRICS.missChunks, () => Object.entries(missReasons(m)).map(([reason, n]): [Record<string, string>, number] => [{ reason }, n]));
    counter(METRICS.prefillTokensSaved, () => c.prefillTokensSaved);
    counter(METRICS.storedChunks, () => tiers(c.storedChunks, vk()?.stores ?? 0));
    counter(METRICS.storedBytes, () => tiers(c.storedBytes, vk()?.bytesOut ?? 0));
    counter(METRICS.retrievedChunks, () => tiers(c.retrievedChunks, vk()?.hits ?? 0));
    counter(METRICS.retrievedBytes, () => tiers(c.retrievedBytes, vk()?.bytesIn ?? 0));
    counter(METRICS.failedRetrieveChunks, () => c.failedRetrieveChunks);
    counter(METRICS.skippedStoreChunks, () => c.skippedChunks);
    counter(METRICS.requestErrors, () => Object.entries(r.errors).map(([op, n]): [Record<string, string>, number] => [{ op }, n]));
    counter(METRICS.bypassedRequests, () => [...r.bypasses].map(([reason, n]): [Record<string, string>, number] => [{ reason }, n]));

    gauge(METRICS.poolCapacityBytes, () => src.memory().capacityBytes);
    gauge(METRICS.poolUsedBytes, () => src.memory().usedBytes);
    gauge(METRICS.poolPageLocked, () => (src.memory().pinned ? 1 : 0));
    gauge(METRICS.hostChunks, () => m.host.stats().entries);
    gauge(METRICS.pinnedBytes, () => m.host.stats().pinnedBytes);
    gauge(METRICS.leases, () => m.leaseCount);
    counter(METRICS.evictions, () => m.host.stats().evictions);
    counter(METRICS.evictedBytes, () => m.host.stats().evictedBytes);

    gauge(METRICS.prefetchChargedBytes, () => m.prefetchStats().chargedBytes);
    counter(METRICS.prefetchWaits, () => m.prefetchStats().waits);
    counter(METRICS.chainMemoHits, () => src.chainMemo?.().hits ?? 0);
    counter(METRICS.chainHashed, () => src.chainMemo?.().misses ?? 0);
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
    gauge(METRICS.valkeyUp, () => (remote().available ? 1 : 0));
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
    gauge(METRICS.registeredWorkers, () => r.registeredWorkers);
    gauge(METRICS.up, () => [[{ version: src.version }, 1]]);
  }
}
