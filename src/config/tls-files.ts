/**
 * The TLS files the config names, read at start so that a wrong path stops
 * the daemon with a ConfigError naming the key (exit 2) instead of leaving a
 * Valkey tier that can never connect. Only the CA file exists: glide 2.5.2
 * takes root certificates and an insecure flag, no client certificate.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError, errorMessage } from '../errors.js';

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;

/** valkey_tls_ca_file's contents; `where` says where the value came from. */
export function readCaFile(path: string, where: string): Buffer {
  const full = resolve(path);
  let pem: Buffer;
  try {
    pem = readFileSync(full);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : errorMessage(e);
    throw new ConfigError(`valkey_tls_ca_file: ${JSON.stringify(path)} (from ${where}) cannot be read: ${why}`);
  }
  if (!PEM_CERT.test(pem.toString('latin1'))) {
    throw new ConfigError(`valkey_tls_ca_file: ${JSON.stringify(path)} (from ${where}) holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  }
  return pem;
}

/** Whether remote_url asks for TLS. */
export function isTlsUrl(url: string | null): boolean {
  return url !== null && /^(?:valkeys|rediss|valkeys-cluster):\/\//i.test(url);
}
