/**
 * valkeys:// against a real TLS-only valkey-server with a self-signed
 * CA made by openssl: trusted through tlsRootCertificates or skipped with
 * tlsInsecure, refused otherwise (a down tier, not a crash).
 */

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ValkeyTier } from '../../src/tiers/valkey-tier.js';
import { startValkey, stopAllValkey, type ValkeyServer } from '../../bench/valkey-server.js';
import { randomChunkKey } from './tier-contract.js';

let server: ValkeyServer;
let dir: string;
let cert: Buffer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kvtier-tls-'));
  const f = (name: string): string => join(dir, name);
  const openssl = (args: string[]): void => {
    execFileSync('openssl', args, { stdio: 'ignore', timeout: 20_000 });
  };
  // A CA and a server certificate it signs: rustls refuses a CA certificate
  // used as the server's own.
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '1', '-subj', '/CN=kvtier test CA']);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('key.pem'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1']);
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n');
  openssl(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('cert.pem'), '-days', '1', '-extfile', f('ext.cnf')]);
  cert = readFileSync(f('ca.pem'));
  server = await startValkey({ tls: { certFile: f('cert.pem'), keyFile: f('key.pem'), caFile: f('ca.pem') } });
});
afterAll(async () => {
  await stopAllValkey();
  rmSync(dir, { recursive: true, force: true });
});

describe('valkeys:// (TLS)', () => {
  it('round-trips a segmented chunk with the server certificate trusted', async () => {
    expect(server.url.startsWith('valkeys://')).toBe(true);
    const tier = await ValkeyTier.create({ url: server.url, tlsRootCertificates: cert, connectTimeoutMs: 4000, segmentBytes: 256 * 1024, log: () => undefined, requestTimeoutMs: 5000 });
    try {
      expect(tier.lastError?.message ?? "up").toBe("up");
      expect(tier.available).toBe(true);
      const k = randomChunkKey();
      const v = randomBytes(1 << 20);
      expect(await tier.put(k, v)).toBe(true);
      expect((await tier.get(k))!.equals(v)).toBe(true);
      expect(await tier.contains([k])).toEqual([true]);
    } finally {
      await tier.close();
    }
  });

  it('tlsInsecure skips the certificate check', async () => {
    const tier = await ValkeyTier.create({ url: server.url, tlsInsecure: true, connectTimeoutMs: 4000, log: () => undefined });
    try {
      expect(tier.available).toBe(true);
    } finally {
      await tier.close();
    }
  });

  it('an untrusted certificate leaves the tier down, without throwing', async () => {
    const tier = await ValkeyTier.create({ url: server.url, log: () => undefined, connectTimeoutMs: 1000 });
    try {
      expect(tier.available).toBe(false);
      expect(await tier.put(randomChunkKey(), Buffer.from('x'))).toBe(false);
    } finally {
      await tier.close();
    }
  });
});
