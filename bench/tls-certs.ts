/**
 * A throwaway CA and a server certificate it signs for 127.0.0.1, made with
 * the openssl CLI: what the TLS tests and `bench throughput --tier valkey
 * --tls` give a local valkey-server. rustls (glide) refuses a CA certificate
 * used as the server's own, so the two are separate.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCertificates {
  dir: string;
  /** For startValkey({ tls }). */
  server: { certFile: string; keyFile: string; caFile: string };
  caFile: string;
  /** A second CA that signed nothing the server has. */
  otherCaFile: string;
  remove(): void;
}

export function makeTestCertificates(): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), 'kvtier-tls-'));
  const f = (name: string): string => join(dir, name);
  const openssl = (args: string[]): void => {
    execFileSync('openssl', args, { stdio: 'ignore', timeout: 20_000 });
  };
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '1', '-subj', '/CN=kvtier test CA']);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('key.pem'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1']);
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n');
  openssl(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('cert.pem'), '-days', '1', '-extfile', f('ext.cnf')]);
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('other.key'), '-out', f('other.pem'), '-days', '1', '-subj', '/CN=some other CA']);
  return {
    dir,
    server: { certFile: f('cert.pem'), keyFile: f('key.pem'), caFile: f('ca.pem') },
    caFile: f('ca.pem'),
    otherCaFile: f('other.pem'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
