/**
 * Who serves which slots of a test cluster, read from CLUSTER NODES text
 * (independent of the tier's own CLUSTER SLOTS parser): for the tests that
 * migrate slots under a tier.
 */
import type { ValkeyCluster, ValkeyServer } from '../../bench/valkey-server.js';

export interface Master {
  node: ValkeyServer;
  id: string;
  ranges: [number, number][];
}

export async function clusterMasters(cluster: ValkeyCluster): Promise<Master[]> {
  const out = await cluster.nodes[0].cli(['CLUSTER', 'NODES']);
  const result: Master[] = [];
  for (const line of out.trim().split('\n')) {
    const f = line.trim().split(' ');
    if (!f[2].includes('master')) continue;
    const port = Number(f[1].split('@')[0].split(':')[1]);
    const node = cluster.nodes.find((n) => n.port === port)!;
    const ranges = f.slice(8).filter((r) => !r.startsWith('[')).map((r) => {
      const [a, b] = r.split('-').map(Number);
      return [a, b ?? a] as [number, number];
    });
    result.push({ node, id: f[0], ranges });
  }
  return result;
}

export function ownerOf(all: Master[], slot: number): Master {
  return all.find((m) => m.ranges.some(([a, b]) => slot >= a && slot <= b))!;
}
