/**
 * valkey-benchmark's figures for a 3-master cluster, as the reference beside
 * the tier's cluster rows (bench/throughput-valkey.ts --cluster).
 *
 *   SET  `valkey-benchmark --cluster -t set`: its clients spread over the
 *        masters, each SET to a key of a random slot of its node.
 *   GET  `--cluster -t get` reads keys of random slots that nothing wrote,
 *        so its replies are nils, not values. Instead: one key per master
 *        (a hash tag in that master's slots) holds a value of the size, and
 *        one plain valkey-benchmark per master GETs it, all at once; the
 *        figure is their sum.
 * Clients: `clients` in all, at least one per master (valkey-benchmark
 * --cluster needs that), split over the masters for the GETs. Its SETs
 * write fresh keys, so they include the server's page faults on new memory
 * (the tier's store_gbps rewrites keys: compare with cold_store_gbps too).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Decoder, GlideClient } from '@valkey/valkey-glide';
import { keyHashSlot } from '../src/tiers/valkey-slots.js';
import type { ValkeyCluster, ValkeyServer } from './valkey-server.js';

export interface ClusterReference {
  what: string;
  store_gbps: number;
  retrieve_gbps: number;
}

type Run = (cmd: string, args: string[], timeoutMs: number) => Promise<string>;
type ParseCsv = (csv: string) => Map<string, number>;

/** The slot ranges the node serves, from its own CLUSTER NODES line. */
async function ownSlots(node: ValkeyServer): Promise<[number, number][]> {
  const me = (await node.cli(['CLUSTER', 'NODES'])).split('\n').find((l) => l.includes('myself'));
  if (me === undefined) throw new Error(`${node.host}:${node.port}: no "myself" line in CLUSTER NODES`);
  return me.trim().split(' ').slice(8).filter((r) => !r.startsWith('[')).map((r) => {
    const [a, b] = r.split('-').map(Number);
    return [a, b ?? a];
  });
}

/** A key whose slot `node` serves. */
async function keyOn(node: ValkeyServer): Promise<string> {
  const ranges = await ownSlots(node);
  for (let i = 0; ; i++) {
    const key = `kvtier-bench-ref:{${i}}`;
    const slot = keyHashSlot(key);
    if (ranges.some(([a, b]) => slot >= a && slot <= b)) return key;
  }
}

export async function clusterReference(cluster: ValkeyCluster, size: number, n: number, clients: number, run: Run, parse: ParseCsv): Promise<ClusterReference> {
  const first = cluster.nodes[0];
  clients = Math.max(clients, cluster.nodes.length);
  const setArgs = ['-h', first.host, '-p', String(first.port), '--cluster', '-t', 'set', '-d', String(size), '-n', String(n), '-c', String(clients), '-P', '1', '--csv'];
  const setRps = parse(await run('valkey-benchmark', setArgs, 120_000)).get('SET') ?? 0;
  const value = randomBytes(size);
  const perNode = Math.max(1, Math.round(clients / cluster.nodes.length));
  // At least 256 MiB per master: the per-master runs start a few ms apart,
  // and their rates are summed, so each must run long against that skew.
  const requests = Math.max(Math.ceil(n / cluster.nodes.length), Math.ceil((256 << 20) / size));
  const keys = await Promise.all(cluster.nodes.map(async (node) => {
    const key = await keyOn(node);
    const c = await GlideClient.createClient({ addresses: [{ host: node.host, port: node.port }], requestTimeout: 30_000, defaultDecoder: Decoder.Bytes });
    try {
      await c.set(key, value);
    } finally {
      c.close();
    }
    return key;
  }));
  const getArgs = (node: ValkeyServer, key: string): string[] => ['-h', node.host, '-p', String(node.port), '-n', String(requests), '-c', String(perNode), '-P', '1', '--csv', 'GET', key];
  const outs = await Promise.all(cluster.nodes.map((node, i) => run('valkey-benchmark', getArgs(node, keys[i]), 120_000)));
  const getRps = outs.reduce((sum, csv) => sum + (parse(csv).get('GET') ?? 0), 0);
  const gbps = (rps: number): number => Math.round(((rps * size) / 1e9) * 1000) / 1000;
  return {
    what: `valkey-benchmark ${setArgs.slice(4).join(' ')}; GET: ${cluster.nodes.length} x valkey-benchmark -n ${requests} -c ${perNode} -P 1 GET <a ${size}-byte key of that master>, at once`,
    store_gbps: gbps(setRps),
    retrieve_gbps: gbps(getRps),
  };
}
