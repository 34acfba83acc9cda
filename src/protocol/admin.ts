/**
 * The admin requests (ListNamespaces, Inspect, Clear, Pin) as dispatch.ts
 * hands them over: wire fields -> checked domain values -> the manager's
 * admin calls (src/manager/admin.ts) -> the reply. Not observed as lookups
 * or stores: they are the operator's, not a worker's.
 */
import type { Namespace } from '../chunking/namespace.js';
import { BadRequestError } from '../errors.js';
import { namespaceIdOf, tierOf } from '../manager/admin.js';
import type { ChunkManager } from '../manager/chunk-manager.js';
import { address } from './from-wire.js';
import type { EnvelopeInit } from './messages.js';
import type { kvtier } from './gen/kvtier.js';

type Reply = Omit<EnvelopeInit, 'id'>;

export async function listNamespaces(m: ChunkManager, req: kvtier.v1.IListNamespaces): Promise<Reply> {
  const r = await m.listNamespaces(namespaceIdOf(req.namespaceId), tierOf(req.tier));
  return { listNamespacesOk: { namespaces: r.namespaces, valkeyListed: r.valkeyListed } };
}

export async function inspect(m: ChunkManager, ns: Namespace, req: kvtier.v1.IInspect): Promise<Reply> {
  const byTokens = req.tokens != null && req.tokens.length > 0;
  const hash = req.chunkHash ?? '';
  if (byTokens === (hash !== '')) throw new BadRequestError('expected a chunk hash or tokens for Inspect, exactly one');
  const chunks = byTokens
    ? await m.inspect({ ns, address: address({ tokens: req.tokens }) })
    : await m.inspect({ namespaceId: namespaceIdOf(req.namespaceId), hash });
  return { inspectOk: { chunks } };
}

export async function clear(m: ChunkManager, req: kvtier.v1.IClear): Promise<Reply> {
  const r = await m.clear(namespaceIdOf(req.namespaceId), tierOf(req.tier));
  return { clearOk: { hostChunks: r.host, valkeyChunks: r.valkey, valkeySkipped: r.valkeySkipped, diskChunks: r.disk } };
}

export async function pin(m: ChunkManager, ns: Namespace, req: kvtier.v1.IPin): Promise<Reply> {
  return { pinOk: await m.pin(ns, address(req.address), req.unpin === true) };
}
