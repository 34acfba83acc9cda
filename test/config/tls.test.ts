/**
 * valkey_tls_ca_file and valkey_tls_insecure through the real loader: where
 * they may be written, what is refused, and the warnings. The daemon side
 * (a private CA against a real TLS server) is test/tiers/valkey-tls.test.ts.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { writeConfig } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'kvtier-tls-config-'));
const ca = join(dir, 'ca.pem');
// Shape only: the loader checks that a PEM certificate is there; glide parses it.
writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');

function fails(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('no ConfigError');
}

describe('valkey_tls_ca_file', () => {
  it('is read from the top level, extra_config and the environment', () => {
    const top = loadConfig({ file: writeConfig(`remote_url: valkeys://h:1\nvalkey_tls_ca_file: ${ca}\n`), env: {} });
    expect(top.config.valkeyTlsCaFile).toBe(ca);
    expect(top.warnings).toEqual([]);
    const extra = loadConfig({ file: writeConfig(`remote_url: rediss://h:1\nextra_config:\n  valkey_tls_ca_file: ${ca}\n`), env: {} });
    expect(extra.config.valkeyTlsCaFile).toBe(ca);
    const env = loadConfig({ env: { KVTIER_REMOTE_URL: 'valkeys://h:1', KVTIER_VALKEY_TLS_CA_FILE: ca } });
    expect(env.config.valkeyTlsCaFile).toBe(ca);
  });

  it('missing or not PEM: an error naming the key, the path and where it came from', () => {
    const file = writeConfig('remote_url: valkeys://h:1\nvalkey_tls_ca_file: /nonexistent/ca.pem\n');
    expect(fails(() => loadConfig({ file, env: {} }))).toMatch(
      new RegExp(`^valkey_tls_ca_file: "/nonexistent/ca.pem" \\(from ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} line 2\\) cannot be read: no such file`),
    );
    const notPem = join(dir, 'key.txt');
    writeFileSync(notPem, 'not a certificate\n');
    expect(fails(() => loadConfig({ env: { KVTIER_REMOTE_URL: 'valkeys://h:1', KVTIER_VALKEY_TLS_CA_FILE: notPem } }))).toMatch(
      /valkey_tls_ca_file: .*key\.txt" \(from environment KVTIER_VALKEY_TLS_CA_FILE\) holds no PEM certificate/,
    );
  });

  it('with a plain URL: not read, a warning that it has no effect', () => {
    const r = loadConfig({ env: {}, overrides: { remote_url: 'valkey://h:1', valkey_tls_ca_file: '/nonexistent/ca.pem' } });
    expect(r.warnings.join('\n')).toMatch(/valkey_tls_ca_file \(from override valkey_tls_ca_file\) has no effect: remote_url is not valkeys:\/\/ or rediss:\/\//);
  });
});

describe('valkey_tls_insecure', () => {
  it('takes true or false only: 1, yes and on from the environment are refused', () => {
    expect(loadConfig({ env: { KVTIER_REMOTE_URL: 'valkeys://h:1', KVTIER_VALKEY_TLS_INSECURE: 'true' } }).config.valkeyTlsInsecure).toBe(true);
    expect(loadConfig({ env: { KVTIER_VALKEY_TLS_INSECURE: 'FALSE' } }).config.valkeyTlsInsecure).toBe(false);
    for (const v of ['1', 'yes', 'on', 'y']) {
      expect(fails(() => loadConfig({ env: { KVTIER_VALKEY_TLS_INSECURE: v } }))).toMatch(
        new RegExp(`valkey_tls_insecure: "${v}" is not allowed .*expected true or false, spelled out`),
      );
    }
    expect(fails(() => loadConfig({ file: writeConfig('valkey_tls_insecure: 1\n'), env: {} }))).toMatch(/valkey_tls_insecure: 1 is not allowed/);
  });

  it('true with a TLS URL warns that the certificate is not verified, naming the URL without its password', () => {
    const r = loadConfig({ env: {}, overrides: { remote_url: 'valkeys://:s3cret@h:1', extra_config: { valkey_tls_insecure: true } } });
    expect(r.config.valkeyTlsInsecure).toBe(true);
    const w = r.warnings.join('\n');
    expect(w).toMatch(/valkey_tls_insecure .*the certificate of "valkeys:\/\/:\*\*\*@h:1" is not verified/);
    expect(w).not.toContain('s3cret');
  });

  it('together with valkey_tls_ca_file is an error', () => {
    expect(fails(() => loadConfig({ env: {}, overrides: { remote_url: 'valkeys://h:1', valkey_tls_ca_file: ca, valkey_tls_insecure: true } }))).toMatch(
      /valkey_tls_insecure: true .* so valkey_tls_ca_file .* would never be used/,
    );
  });
});
