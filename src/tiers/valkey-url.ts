/**
 * remote_url parsing for the Valkey tier.
 *
 *   valkey://[user:pass@]host[:port][/db]     redis:// is the same
 *   valkeys://...  rediss://...               the same over TLS
 *   valkey-cluster://host:port,host:port      cluster seeds (valkeys-cluster: TLS)
 *
 * A plain URL becomes a cluster one with mode 'cluster' (LMCache's
 * extra_config valkey_mode). Hand-parsed because WHATWG URL rejects
 * comma-separated host lists. Every error is a ConfigError that names the URL
 * through redactUrl(): a password never reaches a log line.
 */

import { ConfigError } from '../errors.js';

export type ValkeyMode = 'single' | 'cluster';

export interface ValkeyAddress {
  host: string;
  port: number;
}

export interface ValkeyEndpoint {
  mode: ValkeyMode;
  tls: boolean;
  addresses: ValkeyAddress[];
  username?: string;
  password?: string;
  databaseId: number;
  /** The URL with the password replaced by ***, for logs and errors. */
  redacted: string;
}

const DEFAULT_PORT = 6379;

const SCHEMES: Record<string, { tls: boolean; cluster: boolean }> = {
  valkey: { tls: false, cluster: false },
  redis: { tls: false, cluster: false },
  valkeys: { tls: true, cluster: false },
  rediss: { tls: true, cluster: false },
  'valkey-cluster': { tls: false, cluster: true },
  'valkeys-cluster': { tls: true, cluster: true },
};

/** Replaces the password part of `scheme://user:pass@...` by `***`; safe on any string. */
export function redactUrl(url: string): string {
  return url.replace(/^(\s*[a-z][a-z0-9+.-]*:\/\/[^:@/]*):.*@/i, '$1:***@');
}

function decode(part: string, what: string, redacted: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new ConfigError(`remote_url ${redacted}: bad percent-encoding in the ${what}`);
  }
}

function parseAddress(text: string, redacted: string): ValkeyAddress {
  let host: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end < 0) throw new ConfigError(`remote_url ${redacted}: unclosed [ in host "${text}"`);
    host = text.slice(1, end);
    const rest = text.slice(end + 1);
    if (rest !== '' && !rest.startsWith(':')) throw new ConfigError(`remote_url ${redacted}: bad host "${text}"`);
    portText = rest === '' ? undefined : rest.slice(1);
  } else {
    const colon = text.lastIndexOf(':');
    host = colon < 0 ? text : text.slice(0, colon);
    portText = colon < 0 ? undefined : text.slice(colon + 1);
  }
  if (host === '' || /[\s/?#@]/.test(host)) {
    throw new ConfigError(`remote_url ${redacted}: bad host "${host}"`);
  }
  let port = DEFAULT_PORT;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      throw new ConfigError(`remote_url ${redacted}: port "${portText}" is not a number in 1..65535`);
    }
    port = Number(portText);
  }
  return { host, port };
}

export function parseValkeyUrl(url: string, opts: { mode?: ValkeyMode } = {}): ValkeyEndpoint {
  const redacted = redactUrl(url);
  const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(url.trim());
  if (!m) {
    throw new ConfigError(`remote_url ${redacted} is not a URL; expected valkey://host:port, valkeys://, redis://, rediss:// or valkey-cluster://`);
  }
  const scheme = m[1].toLowerCase();
  const kind = SCHEMES[scheme];
  if (!kind) {
    throw new ConfigError(`remote_url ${redacted}: scheme "${scheme}" is not supported; allowed: ${Object.keys(SCHEMES).join(', ')}`);
  }
  let rest = m[2];
  if (/[?#]/.test(rest)) {
    throw new ConfigError(`remote_url ${redacted}: query strings and fragments are not supported`);
  }
  let username: string | undefined;
  let password: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    const userinfo = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const colon = userinfo.indexOf(':');
    if (colon < 0) {
      throw new ConfigError(`remote_url ${redacted}: a user without a password; write user:password@ or :password@`);
    }
    const user = decode(userinfo.slice(0, colon), 'user name', redacted);
    password = decode(userinfo.slice(colon + 1), 'password', redacted);
    if (password === '') throw new ConfigError(`remote_url ${redacted}: empty password`);
    if (user !== '') username = user;
  }
  const slash = rest.indexOf('/');
  const hostPart = slash < 0 ? rest : rest.slice(0, slash);
  const dbPart = slash < 0 ? '' : rest.slice(slash + 1);
  let databaseId = 0;
  if (dbPart !== '') {
    if (!/^\d{1,3}$/.test(dbPart)) {
      throw new ConfigError(`remote_url ${redacted}: database "${dbPart}" is not a number`);
    }
    databaseId = Number(dbPart);
  }
  if (hostPart === '') throw new ConfigError(`remote_url ${redacted}: no host`);
  const addresses = hostPart.split(',').map((h) => parseAddress(h.trim(), redacted));
  const mode: ValkeyMode = kind.cluster || opts.mode === 'cluster' ? 'cluster' : 'single';
  if (mode === 'single' && addresses.length > 1) {
    throw new ConfigError(`remote_url ${redacted}: several hosts need valkey-cluster:// or valkey_mode: cluster`);
  }
  if (mode === 'cluster' && databaseId !== 0) {
    throw new ConfigError(`remote_url ${redacted}: a cluster has only database 0`);
  }
  const endpoint: ValkeyEndpoint = { mode, tls: kind.tls, addresses, databaseId, redacted };
  if (username !== undefined) endpoint.username = username;
  if (password !== undefined) endpoint.password = password;
  return endpoint;
}
