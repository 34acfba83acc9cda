/**
 * The tier contract against ValkeyTier on a real single valkey-server and a
 * real 3-master cluster, with each serde and with small segments (so that
 * segment edges are exercised by modest payloads).
 */

import { afterAll, beforeAll, describe } from 'vitest';
import { ValkeyTier } from '../../src/tiers/valkey-tier.js';
import { startValkey, startValkeyCluster, stopAllValkey, type ValkeyCluster, type ValkeyServer } from '../helpers/valkey-server.js';
import { runTierContract } from './tier-contract.js';

let single: ValkeyServer;
let cluster: ValkeyCluster;

beforeAll(async () => {
  [single, cluster] = await Promise.all([startValkey(), startValkeyCluster()]);
});
afterAll(async () => {
  await stopAllValkey();
});

const quiet = (): void => undefined;

describe('valkey single', () => {
  runTierContract('valkey single, naive, 1 MiB segments', () => ValkeyTier.create({ url: single.url, log: quiet }));
  runTierContract('valkey single, lz4, 256 KiB segments', () =>
    ValkeyTier.create({ url: single.url, serde: 'lz4', segmentBytes: 256 << 10, connections: 2, log: quiet }), { maxBytes: 3 << 20 });
  runTierContract('valkey single, lz4-shuffle, ttl', () =>
    ValkeyTier.create({ url: single.url, serde: 'lz4-shuffle', ttlSecs: 600, log: quiet }), { maxBytes: 3 << 20 });
});

describe('valkey cluster', () => {
  runTierContract('valkey cluster, naive', () => ValkeyTier.create({ url: cluster.url, log: quiet }));
});
