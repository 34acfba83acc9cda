/**
 * The key-addressed API: Put, Get, Exists and Invalidate of single chunks
 * named by opaque client keys (and Invalidate by tokens or whole namespace).
 * Each reads host first, then the disk tier, then the remote tier; a remote failure is logged
 * and answered from the host tier, never sent to the worker as an error.
 */
import type { Namespace } from '../chunking/namespace.js';
import { hashKeys } from '../chunking/prefix-hash.js';
import { errorMessage } from '../errors.js';
import { ChunkId, chunkIds } from '../tiers/chunk-id.js';
import { resolveAddress, type ChunkAddress } from './address.js';
import { fetchLocalFirst } from './lookup.js';
import type { ManagerParts } from './parts.js';
import { chunkTokens } from './remote-pace.js';
import { store } from './transfers.js';

export async function put(p: ManagerParts, ns: Namespace, key: Uint8Array, value: Buffer): Promise<boolean> {
  const r = await store(p, ns, { keys: [key] }, { kind: 'inline', chunks: [value] }, 0);
  return r.stored + r.present === 1;
}

/**
 * One chunk by key: host, disk, then the remote tier. Like a Lookup, a Get does not read a
 * chunk only the remote tier could have when that is slower than recomputing it (remote-pace.ts),
 * and its remote read is a read-rate sample.
 */
export async function get(p: ManagerParts, ns: Namespace, key: Uint8Array): Promise<Buffer | null> {
  const id = ChunkId.at(ns.id, hashKeys(ns.root, [key]), 0);
  let entry = p.host.pin(id) ?? null;
  if (entry === null) {
    const remote = !(p.disk?.has(id.hostKey) ?? false);
    if (remote && !p.pace.pays(ns.id)) {
      // Not counted as a skipped chunk: without asking the remote tier, whether it holds it is unknown.
      p.counters.remoteSlowSkippedGets++;
      return null;
    }
    const started = process.hrtime.bigint();
    const fetched = await fetchLocalFirst(p, id);
    if (remote && fetched !== null) {
      p.pace.learnChunk(ns.id, fetched.slab.buf.length, chunkTokens(0, ns.fingerprint.blockSize));
      p.pace.recordRead(fetched.slab.buf.length, Number(process.hrtime.bigint() - started) / 1e6);
    }
    entry = fetched !== null && !fetched.doomed && p.host.peek(id) === fetched ? fetched : null;
    if (entry !== null) p.host.pinEntry(entry);
  }
  if (entry === null) return null;
  const copy = Buffer.from(entry.slab.buf);
  p.host.unpin(entry);
  return copy;
}

export async function exists(p: ManagerParts, ns: Namespace, keys: Uint8Array[]): Promise<boolean[]> {
  const ids = chunkIds(ns.id, hashKeys(ns.root, keys), keys.length);
  const disk = p.disk;
  const found = ids.map((id) => p.host.has(id) || (disk !== null && disk.has(id.hostKey)));
  const remote = p.sync.usable();
  const missing = found.flatMap((f, i) => (f ? [] : [i]));
  if (remote !== null && missing.length > 0) {
    try {
      const r = await remote.contains(missing.map((i) => ids[i]));
      missing.forEach((i, j) => {
        found[i] = r[j] === true;
      });
    } catch (e) {
      p.log.warn('remote exists failed', { error: errorMessage(e) });
    }
  }
  return found;
}

/** Removes the address's chunks from every tier; with no address, every chunk of the namespace. */
export async function invalidate(p: ManagerParts, ns: Namespace, address: ChunkAddress | null): Promise<number> {
  if (address === null) {
    const removed = Math.max(p.host.removeNamespace(ns.id), p.disk?.removeNamespace(ns.id) ?? 0);
    const remote = p.sync.usable();
    if (remote?.deleteNamespace === undefined) return removed;
    try {
      return Math.max(removed, await remote.deleteNamespace(ns.id));
    } catch (e) {
      p.log.warn('remote namespace invalidate failed', { error: errorMessage(e) });
      return removed;
    }
  }
  const { ids: keys } = resolveAddress(p, ns, address);
  let removed = 0;
  for (const id of keys) {
    const onHost = p.host.remove(id);
    if ((p.disk?.remove(id.hostKey) ?? false) || onHost) removed++;
  }
  const remote = p.sync.usable();
  if (remote !== null && keys.length > 0) {
    try {
      removed = Math.max(removed, await remote.delete(keys));
    } catch (e) {
      p.log.warn('remote invalidate failed', { error: errorMessage(e) });
    }
  }
  return removed;
}
