/**
 * The dispatcher against a real ChunkManager over heap memory, without a
 * socket: the sync-answer fast path, and that each Lookup, Store and
 * Retrieve reaches the observer exactly once with the figures the manager
 * counted (the observer is the only thing that times requests; nothing wraps
 * the manager).
 */
import { describe, expect, it } from 'vitest';
import { packTokens } from '../../src/chunking/tokens.js';
import { silentLogger } from '../../src/log.js';
import { ChunkManager } from '../../src/manager/chunk-manager.js';
import { Dispatcher, type RequestObserver } from '../../src/protocol/dispatch.js';
import { PROTOCOL_VERSION, decodeEnvelope, encodeFrame, type EnvelopeInit } from '../../src/protocol/messages.js';
import { HeapMemory } from '../../src/tiers/host-memory.js';
import { HostTier } from '../../src/tiers/host-tier.js';

const CHUNK_BYTES = 4096;

function setup() {
  const manager = new ChunkManager({
    chunkSize: 256, saveUnfullChunk: false, leaseTtlMs: 30_000, localCpu: true, host: new HostTier(new HeapMemory(1 << 24)),
    remote: null, writeBehindQueueBytes: 1 << 20, writeBehindConcurrency: 2, logger: silentLogger,
  });
  const calls: Array<[string, ...unknown[]]> = [];
  const observer: RequestObserver = {
    lookupDone: (s, hit) => calls.push(['lookup', typeof s, hit]),
    storeCopied: (form, s, chunks, bytes) => calls.push(['store', form, typeof s, chunks, bytes]),
    retrieveDone: (form, s, chunks, bytes) => calls.push(['retrieve', form, typeof s, chunks, bytes]),
    failed: (op) => calls.push(['failed', op]),
    kvRegistered: () => calls.push(['registered']),
    kvReleased: () => calls.push(['released']),
  };
  const sent: EnvelopeInit[] = [];
  const d = new Dispatcher(
    { manager, chunkSize: 256, maxFrameBytes: 1 << 22, maxChunkBytes: 1 << 20, saveUnfullChunk: false, serverVersion: 'test', registrar: null, observer, statsJson: () => '{}' },
    { owner: 1, peer: null, log: silentLogger, send: (m) => sent.push(m) },
  );
  const env = (m: EnvelopeInit) => decodeEnvelope(encodeFrame(m).subarray(4));
  return { manager, d, calls, sent, env };
}

describe('dispatcher', () => {
  it('answers Hello, Ping, Stats and ReleaseLease in the same turn, without a promise', () => {
    const { d, env } = setup();
    expect(() => d.dispatch(env({ id: 1, ping: {} }))).not.toThrow();
    expect(d.dispatch(env({ id: 1, ping: {} }))).toEqual({ pong: {} });
    const hello = d.dispatch(env({ id: 2, hello: { protocolVersion: PROTOCOL_VERSION, fingerprint: { model: 'm' } } }));
    expect(hello).not.toBeInstanceOf(Promise);
    expect(d.dispatch(env({ id: 3, stats: {} }))).toEqual({ statsOk: { json: '{}' } });
    expect(() => d.dispatch(env({ id: 4, releaseLease: { leaseId: 99 } }))).toThrow(/lease/i);
  });

  it('refuses requests before Hello synchronously, before any handler runs', () => {
    const { d, env, calls } = setup();
    expect(() => d.dispatch(env({ id: 1, lookup: { address: { tokens: packTokens([1, 2, 3]) } } }))).toThrow(expect.objectContaining({ code: 'KVT_NOT_HELLO' }));
    expect(calls).toEqual([]);
  });

  it('reports each Store, Lookup and Retrieve once, with the figures the manager counted', async () => {
    const { manager, d, calls, sent, env } = setup();
    d.dispatch(env({ id: 1, hello: { protocolVersion: PROTOCOL_VERSION, fingerprint: { model: 'm' } } }));
    const tokens = packTokens(Array.from({ length: 2 * 256 + 10 }, (_, i) => i));
    const chunks = [Buffer.alloc(CHUNK_BYTES, 1), Buffer.alloc(CHUNK_BYTES, 2)];
    expect(await d.dispatch(env({ id: 2, store: { address: { tokens }, chunks } }))).toBeNull();
    expect(sent.map((m) => Object.keys(m).find((k) => k !== 'id'))).toEqual(['storeCopied', 'storeCommitted']);
    const looked = await d.dispatch(env({ id: 3, lookup: { address: { tokens } } }));
    const leaseId = Number(looked!.lookupOk!.leaseId);
    expect(await d.dispatch(env({ id: 4, retrieve: { leaseId } }))).toBeNull();
    await expect(d.dispatch(env({ id: 5, retrieve: { leaseId: leaseId + 1 } }))).rejects.toMatchObject({ code: 'KVT_LEASE_NOT_FOUND' });
    expect(calls).toEqual([
      ['store', 'inline', 'number', 2, 2 * CHUNK_BYTES],
      ['lookup', 'number', 2],
      ['retrieve', 'inline', 'number', 2, 2 * CHUNK_BYTES],
      ['failed', 'retrieve'],
    ]);
    const c = manager.counters;
    expect({ lookups: c.lookups, hitChunks: c.hitChunks, remoteHitChunks: c.remoteHitChunks, lookupTokens: c.lookupTokens, hostHitTokens: c.hostHitTokens })
      .toEqual({ lookups: 1, hitChunks: 2, remoteHitChunks: 0, lookupTokens: 522, hostHitTokens: 512 });
    expect({ storedChunks: c.storedChunks, retrievedChunks: c.retrievedChunks, prefillTokensSaved: c.prefillTokensSaved, remoteLookupTokens: c.remoteLookupTokens })
      .toEqual({ storedChunks: 2, retrievedChunks: 2, prefillTokensSaved: 512, remoteLookupTokens: 0 });
    await manager.close();
  });
});
