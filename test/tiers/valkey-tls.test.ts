/**
 * valkeys:// against a real TLS-only valkey-server with a self-signed
 * CA made by openssl: trusted through tlsRootCertificates or skipped with
 * tlsInsecure, refused otherwise (a down tier, not a crash). Then the same
 * through daemons configured with valkey_tls_ca_file, against a server with
 * a password: chunks go through Valkey; a wrong CA is an error naming the
 * redacted URL; an unreadable CA file stops the config. The tier contract
 * runs over TLS on both data paths; the native path (node's OpenSSL in the
 * addon) checks the certificate and the host name itself.
 */

import { randomBytes } from 'node:crypto';
import { ConfigError } from '../../src/errors.js';
import { packTokens } from '../../src/chunking/tokens.js';
import { createLogger } from '../../src/log.js';
import { startTestDaemon } from '../helpers/daemon.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ValkeyTier } from '../../src/tiers/valkey-tier.js';
import { startValkey, stopAllValkey, type ValkeyServer } from '../../bench/valkey-server.js';
import { makeTestCertificates, type TestCertificates } from '../../bench/tls-certs.js';
import { randomChunkKey, runTierContract } from './tier-contract.js';
import { nativeAvailable, openValkeyLink } from '../../native/index.js';

let certs: TestCertificates;
let server: ValkeyServer;
let dir: string;
let cert: Buffer;
/** A second CA that signed nothing the server has. */
let otherCa: string;
let secured: ValkeyServer;
const PASSWORD = 'tls-secret-pw';

beforeAll(async () => {
  certs = makeTestCertificates();
  dir = certs.dir;
  otherCa = certs.otherCaFile;
  cert = readFileSync(certs.caFile);
  server = await startValkey({ tls: certs.server });
  secured = await startValkey({ tls: certs.server, requirepass: PASSWORD });
}, 60_000);
afterAll(async () => {
  await stopAllValkey();
  certs?.remove();
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
    const tier = await ValkeyTier.create({ url: server.url, log: () => undefined, connectTimeoutMs: 5000 }); // time for the handshake to fail on its certificate, not on the clock, on a loaded host
    try {
      expect(tier.available).toBe(false);
      expect(tier.lastError?.message).toMatch(/invalid peer certificate.*valkey_tls_ca_file/s);
      expect(await tier.put(randomChunkKey(), Buffer.from('x'))).toBe(false);
    } finally {
      await tier.close();
    }
  });
});

for (const dataPath of ['native', 'glide'] as const) {
  describe.skipIf(dataPath === 'native' && !nativeAvailable())(`valkeys:// on the ${dataPath} data path`, () => {
    runTierContract(`valkey single over TLS, ${dataPath}, 256 KiB segments`, () =>
      ValkeyTier.create({ url: server.url, dataPath, tlsRootCertificates: cert, segmentBytes: 256 << 10, connections: 2, connectTimeoutMs: 4000, log: () => undefined }), {
      maxBytes: 3 << 20,
      finally: (t) => {
        const info = (t as ValkeyTier).dataPath;
        expect(info.path).toBe(dataPath);
        if (dataPath === 'native') expect(info.reason).toMatch(/connections \(TLS\) to 127\.0\.0\.1:/);
      },
    });
  });
}

describe.skipIf(!nativeAvailable())('native TLS connections check what they talk to', () => {
  /** One GET of a key nobody stored, over a native link with these settings. */
  const probe = async (host: string, tls: { caPem?: string; insecure: boolean } | undefined): Promise<string> => {
    const link = openValkeyLink({ host, port: server.port, connections: 1, connectTimeoutMs: 3000, pipelineBytes: 1 << 20, ...(tls ? { tls } : {}) });
    try {
      const r = await link.read(`{probe}:${randomBytes(8).toString('hex')}`, 1024, [], Buffer.alloc(0), 1 << 20, 3000, false);
      return r.manifestState;
    } catch (e) {
      const err = e as { code?: string; message: string };
      if (process.env.KVTIER_TEST_LOG) console.log(host, err.message);
      return `${err.code}: ${err.message}`;
    } finally {
      link.close();
    }
  };

  it('trusts the server with its CA, and without a check when insecure', async () => {
    expect(await probe('127.0.0.1', { caPem: cert.toString('utf8'), insecure: false })).toBe('nil');
    expect(await probe('127.0.0.1', { insecure: true })).toBe('nil');
  });

  it('refuses a certificate another CA signed, one that names another host, and the system roots', async () => {
    expect(await probe('127.0.0.1', { caPem: readFileSync(otherCa, 'utf8'), insecure: false })).toMatch(/^KVT_VALKEY_UNAVAILABLE: .*certificate/);
    // The certificate names IP 127.0.0.1 only; "localhost" resolves there but is not named.
    expect(await probe("localhost", { caPem: cert.toString("utf8"), insecure: false })).toMatch(/^KVT_VALKEY_UNAVAILABLE: .*hostname mismatch/);
    expect(await probe('127.0.0.1', { insecure: false })).toMatch(/^KVT_VALKEY_UNAVAILABLE: .*certificate/);
  });

  it('plain TCP to a TLS-only server fails within its deadline, it does not hang', async () => {
    const t0 = Date.now();
    expect(await probe('127.0.0.1', undefined)).toMatch(/^KVT_VALKEY_UNAVAILABLE: /);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});

describe('valkeys:// from the config (valkey_tls_ca_file)', () => {
  const fp = { model: 'tls-model', dtype: 'bfloat16', kvLayout: 'test' };
  const tokens = (n: number, seed: number): Buffer => packTokens(Array.from({ length: n }, (_, i) => (i * 7919 + seed) % 128_000));

  it('two daemons share chunks through a TLS Valkey with a private CA', async () => {
    expect(secured.url).toBe(`valkeys://:${PASSWORD}@127.0.0.1:${secured.port}`);
    const cfg = { remote_url: secured.url, extra_config: { valkey_tls_ca_file: join(dir, 'ca.pem') }, valkey_connections: 2 };
    const a = await startTestDaemon(cfg);
    const b = await startTestDaemon(cfg);
    try {
      expect(a.config.valkeyTlsCaFile).toBe(join(dir, 'ca.pem'));
      expect(a.daemon.stats().remote).toMatchObject({ configured: true, available: true });
      const ca = await a.connect({ fingerprint: fp });
      const cb = await b.connect({ fingerprint: fp });
      const t = tokens(2 * 256, 1);
      const chunks = [randomBytes(3 * (1 << 20) + 5), randomBytes(4096)];
      expect(await (await ca.store({ address: { tokens: t }, chunks })).committed).toMatchObject({ committedChunks: 2 });
      const l = await cb.lookup({ tokens: t });
      expect(l.valkeyChunks).toBe(2);
      const r = await cb.retrieve({ leaseId: l.leaseId });
      expect(r.loadedChunks).toBe(2);
      r.chunks.forEach((c, i) => expect(Buffer.from(c).equals(chunks[i])).toBe(true));
    } finally {
      await a.stop();
      await b.stop();
    }
  }, 60_000);

  it('a wrong CA: the daemon runs on its host tier and says why, naming the URL without the password', async () => {
    const lines: string[] = [];
    const d = await startTestDaemon(
      { remote_url: secured.url, valkey_tls_ca_file: otherCa },
      { logger: createLogger('info', {}, (l) => lines.push(l)) },
    );
    try {
      expect(d.daemon.stats().remote).toMatchObject({ configured: true, available: false });
      const log = lines.join('');
      expect(log).toContain(`valkeys://:***@127.0.0.1:${secured.port}`);
      expect(log).toMatch(/certificate/i);
      expect(log).toMatch(/valkey_tls_ca_file/);
      expect(log).not.toContain(PASSWORD);
      const c = await d.connect({ fingerprint: fp });
      const s = await c.store({ address: { tokens: tokens(256, 2) }, chunks: [randomBytes(1000)] });
      expect(s.copied.storedChunks).toBe(1);
      expect((await s.committed).failedChunks).toBe(1);
      expect((await c.lookup({ tokens: tokens(256, 2) }, { noLease: true })).hostChunks).toBe(1);
    } finally {
      await d.stop();
    }
  }, 60_000);

  it('a CA file that is missing, or not PEM, is a ConfigError naming the key', async () => {
    const missing = join(dir, 'no-such-ca.pem');
    const err = await startTestDaemon({ remote_url: secured.url, valkey_tls_ca_file: missing }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/^valkey_tls_ca_file: .*no-such-ca\.pem.* cannot be read: no such file/);
    const notPem = await startTestDaemon({ remote_url: secured.url, valkey_tls_ca_file: join(dir, 'ext.cnf') }).catch((e: unknown) => e);
    expect(notPem).toBeInstanceOf(ConfigError);
    expect((notPem as Error).message).toMatch(/valkey_tls_ca_file: .*holds no PEM certificate/);
  });

  it('valkey_tls_insecure: true connects without the CA', async () => {
    const d = await startTestDaemon({ remote_url: secured.url, valkey_tls_insecure: true });
    try {
      expect(d.daemon.stats().remote).toMatchObject({ configured: true, available: true });
    } finally {
      await d.stop();
    }
  }, 30_000);
});
