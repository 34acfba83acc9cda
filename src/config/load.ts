/**
 * loadConfig: defaults < YAML file < environment < overrides, every value
 * checked against the table in schema.ts, then the few rules that span keys.
 *
 * Every layer's value is checked, even one a higher layer replaces, so a bad
 * file line is reported at once rather than when the env var goes away.
 * Problems that stop the daemon are ConfigErrors; the rest are warnings for
 * the caller to log (this module never logs).
 */
import { resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { Rejected } from './checks.js';
import { FIELDS, SCHEMA, type Field, type KvtierConfig } from './schema.js';
import { isTlsUrl, readCaFile } from './tls-files.js';
import { envLayers, overrideLayers, readFileLayers, type Layer, type Raw } from './sources.js';

export type { KvtierConfig } from './schema.js';

export interface LoadOptions {
  /** --config; when null or absent, KVTIER_CONFIG_FILE, then LMCACHE_CONFIG_FILE, else no file. */
  file?: string | null;
  /** Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** CLI flags by YAML key name; highest precedence; undefined values are skipped. */
  overrides?: Partial<Record<string, unknown>>;
}

export interface LoadedConfig {
  config: KvtierConfig;
  warnings: string[];
  /** Absolute path of the file read, or null. */
  source: string | null;
}

function show(value: unknown, secret: boolean): string {
  if (secret) return '<hidden>';
  let s = typeof value === 'string' || (typeof value === 'object' && value !== null) ? JSON.stringify(value) : String(value);
  s = s.replace(/\/\/([^:@/\s]*):([^@/\s]*)@/g, '//$1:***@');
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function checked<F extends Field>(field: F, raw: Raw): KvtierConfig[F] {
  const e = SCHEMA[field];
  try {
    return e.check(raw.value);
  } catch (err) {
    if (!(err instanceof Rejected)) throw err;
    const hint = err.hint ? `; ${err.hint}` : '';
    throw new ConfigError(`${raw.name}: ${show(raw.value, e.secret)} is not allowed (from ${raw.origin}); expected ${e.type}${hint}`);
  }
}

function resolveFile(opts: LoadOptions, env: NodeJS.ProcessEnv): { path: string; named: string } | null {
  if (opts.file) return { path: resolve(opts.file), named: '--config' };
  for (const name of ['KVTIER_CONFIG_FILE', 'LMCACHE_CONFIG_FILE']) {
    const v = env[name];
    if (v && v.trim() !== '') return { path: resolve(v), named: name };
  }
  return null;
}

type Origins = { [F in Field]: string };

/** Rules between keys; mutates config, may throw. */
function crossCheck(config: KvtierConfig, origins: Origins, warnings: string[]): void {
  const url = config.remoteUrl;
  const cluster = url === null ? null : /^(valkeys?-cluster):\/\//i.exec(url)?.[1].toLowerCase() ?? null;
  if (cluster !== null) {
    if (config.valkeyMode === 'single' && origins.valkeyMode !== 'default') {
      throw new ConfigError(
        `valkey_mode: "single" (from ${origins.valkeyMode}) conflicts with remote_url ${show(url, false)} ` +
          `(from ${origins.remoteUrl}); a ${cluster}:// URL needs valkey_mode cluster`,
      );
    }
    config.valkeyMode = 'cluster';
  }
  if (url === null && config.valkeyMode === 'cluster') {
    warnings.push(`valkey_mode cluster (from ${origins.valkeyMode}) has no effect: remote_url is not set`);
  }
  const tls = isTlsUrl(url);
  if (config.valkeyTlsCaFile !== null && config.valkeyTlsInsecure) {
    throw new ConfigError(
      `valkey_tls_insecure: true (from ${origins.valkeyTlsInsecure}) turns certificate checks off, so valkey_tls_ca_file ` +
        `(from ${origins.valkeyTlsCaFile}) would never be used; set one of them`,
    );
  }
  for (const f of ['valkeyTlsCaFile', 'valkeyTlsInsecure'] as const) {
    if (!tls && origins[f] !== 'default' && config[f] !== null && config[f] !== false) {
      warnings.push(`${SCHEMA[f].key} (from ${origins[f]}) has no effect: remote_url is not valkeys:// or rediss://`);
    }
  }
  if (tls && config.valkeyTlsCaFile !== null) readCaFile(config.valkeyTlsCaFile, origins.valkeyTlsCaFile);
  if (tls && config.valkeyTlsInsecure) {
    warnings.push(`valkey_tls_insecure (from ${origins.valkeyTlsInsecure}): the certificate of ${show(url, false)} is not verified`);
  }
  if (url === null && !config.localCpu) {
    warnings.push('local_cpu is false and remote_url is not set: kvtier will store nothing');
  }
}

export function loadConfig(opts: LoadOptions = {}): LoadedConfig {
  const env = opts.env ?? process.env;
  const warnings: string[] = [];
  const file = resolveFile(opts, env);
  const sources = [
    ...(file ? [readFileLayers(file.path, file.named, warnings)] : []),
    envLayers(env, warnings),
    overrideLayers(opts.overrides ?? {}, warnings),
  ];
  const layers: Layer[] = sources.flatMap((s) => [s.extra, s.top]);

  const config = {} as Record<Field, unknown>;
  const origins = {} as Origins;
  for (const field of FIELDS) {
    let value: unknown = field === 'extraConfig' ? {} : SCHEMA[field].default;
    origins[field] = 'default';
    for (const layer of layers) {
      const raw = layer.get(field);
      if (!raw) continue;
      const v = checked(field, raw);
      // extra_config maps merge key by key; every other field is replaced.
      value = field === 'extraConfig' ? { ...(value as object), ...(v as object) } : v;
      origins[field] = raw.origin;
    }
    config[field] = value;
  }
  const typed = config as KvtierConfig;
  crossCheck(typed, origins, warnings);
  return { config: typed, warnings, source: file ? file.path : null };
}

export interface ConfigTableRow {
  key: string;
  type: string;
  default: string;
  env: string;
  lmcacheAlias: string | null;
  doc: string;
}

/** The table for README/docs generation, in schema order. */
export function configTable(): ConfigTableRow[] {
  return FIELDS.map((f) => {
    const e = SCHEMA[f];
    return { key: e.key, type: e.type, default: e.defaultText, env: e.env, lmcacheAlias: e.lmcacheAlias, doc: e.doc };
  });
}
