/**
 * Request timing by wrapping the manager, not by editing it (STYLE item 13).
 *
 * instrumentManager() replaces the instance's lookup/store/retrieve methods
 * with timed ones. Per request it does one hrtime pair, one histogram
 * observe (prom-client, pre-bound to its label) and one slow-op ring write;
 * token/byte figures go into plain numbers that the registry reads at
 * scrape time. Errors pass through unchanged and are counted.
 */
import type { ChunkManager } from '../manager/chunk-manager.js';
import type { Histogram } from 'prom-client';
import { SlowOpRing } from './slow-ops.js';

/** Plain counters that the manager's own counters do not have. */
export class RequestCounters {
  lookupTokens = 0;
  hostHitTokens = 0;
  valkeyLookupTokens = 0;
  valkeyHitTokens = 0;
  prefillTokensSaved = 0;
  errors = { lookup: 0, store: 0, retrieve: 0 };
}

interface Observer {
  observe(seconds: number): void;
}

export interface InstrumentTargets {
  counters: RequestCounters;
  ring: SlowOpRing;
  lookup: Histogram;
  store: Histogram<'form'>;
  retrieve: Histogram<'form'>;
  chunkSize: number;
  /** Whether a remote tier was asked (configured and available) for lookups. */
  remoteAsked(): boolean;
}

const LOOKUP = 0;
const STORE = 1;
const RETRIEVE = 2;

function elapsedSeconds(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

export function instrumentManager(manager: ChunkManager, t: InstrumentTargets): void {
  const c = t.counters;
  const lookupObs: Observer = t.lookup;
  const storeObs = { inline: t.store.labels('inline'), blocks: t.store.labels('blocks') };
  const retrieveObs = { inline: t.retrieve.labels('inline'), blocks: t.retrieve.labels('blocks') };

  const lookup = manager.lookup.bind(manager);
  manager.lookup = async (ns, address, opts) => {
    const t0 = process.hrtime.bigint();
    const remoteAsked = t.remoteAsked();
    try {
      const r = await lookup(ns, address, opts);
      const s = elapsedSeconds(t0);
      lookupObs.observe(s);
      t.ring.record(LOOKUP, s * 1000, r.hitChunks, 0);
      const asked = 'tokens' in address ? address.tokens.byteLength >>> 2 : 0;
      // Chunks are chunk_size tokens except a saved partial last one: the host
      // share is capped by the hit tokens, the rest of the hit came from Valkey.
      // Disk tier hits are neither host nor Valkey tokens (the disk counts its own hits).
      const hostTokens = Math.min(r.hitTokens, r.hostChunks * t.chunkSize);
      const localTokens = Math.min(r.hitTokens, (r.hostChunks + r.diskChunks) * t.chunkSize);
      c.lookupTokens += asked;
      c.hostHitTokens += hostTokens;
      if (remoteAsked) {
        c.valkeyLookupTokens += asked - localTokens;
        c.valkeyHitTokens += r.hitTokens - localTokens;
      }
      return r;
    } catch (e) {
      c.errors.lookup++;
      throw e;
    }
  };

  const store = manager.store.bind(manager);
  manager.store = async (ns, address, source, skip) => {
    const t0 = process.hrtime.bigint();
    try {
      const r = await store(ns, address, source, skip);
      const s = elapsedSeconds(t0);
      storeObs[source.kind === 'inline' ? 'inline' : 'blocks'].observe(s);
      const bytes = source.kind === 'inline' ? source.chunks.reduce((n, b) => n + b.length, 0) : r.stored * source.copier.chunkBytes;
      t.ring.record(STORE, s * 1000, r.stored, bytes);
      return r;
    } catch (e) {
      c.errors.store++;
      throw e;
    }
  };

  const retrieveInline = manager.retrieveInline.bind(manager);
  manager.retrieveInline = async (ns, leaseId, first, num) => {
    const t0 = process.hrtime.bigint();
    try {
      const r = await retrieveInline(ns, leaseId, first, num);
      const s = elapsedSeconds(t0);
      retrieveObs.inline.observe(s);
      let loaded = 0;
      let bytes = 0;
      for (const b of r.chunks) {
        if (b !== null) {
          loaded++;
          bytes += b.length;
        }
      }
      c.prefillTokensSaved += loaded * t.chunkSize;
      t.ring.record(RETRIEVE, s * 1000, loaded, bytes);
      return r;
    } catch (e) {
      c.errors.retrieve++;
      throw e;
    }
  };

  const retrieveBlocks = manager.retrieveBlocks.bind(manager);
  manager.retrieveBlocks = async (ns, leaseId, first, num, blockIds, copier) => {
    const t0 = process.hrtime.bigint();
    try {
      const r = await retrieveBlocks(ns, leaseId, first, num, blockIds, copier);
      const s = elapsedSeconds(t0);
      retrieveObs.blocks.observe(s);
      c.prefillTokensSaved += r.loaded * t.chunkSize;
      t.ring.record(RETRIEVE, s * 1000, r.loaded, r.loaded * copier.chunkBytes);
      return r;
    } catch (e) {
      c.errors.retrieve++;
      throw e;
    }
  };
}
