/**
 * Turns each config source (YAML file, environment, CLI overrides) into a
 * pair of layers of raw, unchecked values tagged with where they came from.
 *
 * Per source, `extra` (fields set through extra_config sub-keys) sits below
 * `top` (the same fields as top-level keys). The file is parsed as YAML 1.1,
 * like LMCache's PyYAML, so an LMCache file means the same here (unquoted
 * 0600 is octal, yes/no are booleans).
 */
import { readFileSync } from 'node:fs';
import { LineCounter, isMap, isScalar, parse, parseDocument, type Node } from 'yaml';
import { ConfigError, errorMessage } from '../errors.js';
import {
  EXTRA_KEYS, LMCACHE_UNIMPLEMENTED, RENAMED, nearestKey, renamedMessage, unimplementedMessage, unknownMessage,
} from './key-names.js';
import { FIELD_BY_KEY, FIELDS, SCHEMA, type Field } from './schema.js';

export interface Raw {
  /** The key as the user wrote it: chunk_size, extra_config.valkey_mode. */
  readonly name: string;
  readonly value: unknown;
  /** "/etc/kvtier.yaml line 3", "environment KVTIER_CHUNK_SIZE", "override socket_path". */
  readonly origin: string;
}

export type Layer = Map<Field, Raw>;

export interface SourceLayers {
  readonly extra: Layer;
  readonly top: Layer;
}

const YAML_OPTIONS = { version: '1.1', uniqueKeys: true, prettyErrors: true } as const;

function emptyLayers(): SourceLayers {
  return { extra: new Map(), top: new Map() };
}

function isPlainMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function absorbExtra(value: unknown, whereOf: (key: string) => string, out: SourceLayers): void {
  if (!isPlainMap(value)) return; // the extra_config check itself reports it
  for (const [sub, field] of EXTRA_KEYS) {
    if (value[sub] === undefined || out.extra.has(field)) continue;
    const name = `extra_config.${sub}`;
    out.extra.set(field, { name, value: value[sub], origin: whereOf(name) });
  }
}

/** Reads a key: value map (a file's top level, or the overrides). */
function absorb(
  map: Record<string, unknown>,
  whereOf: (key: string) => string,
  warnings: string[],
  onUnknown: (key: string, where: string) => void,
): SourceLayers {
  const out = emptyLayers();
  for (const [key, value] of Object.entries(map)) {
    if (value === undefined) continue;
    const where = whereOf(key);
    const field = FIELD_BY_KEY.get(key);
    const renamed = RENAMED.get(key);
    if (field) {
      out.top.set(field, { name: key, value, origin: where });
      if (field === 'extraConfig') absorbExtra(value, whereOf, out);
    } else if (renamed) {
      warnings.push(renamedMessage(key, renamed, where));
      if (map[renamed] === undefined) {
        out.top.set(FIELD_BY_KEY.get(renamed)!, { name: key, value, origin: where });
      }
    } else if (LMCACHE_UNIMPLEMENTED.has(key)) {
      warnings.push(unimplementedMessage(key, where));
    } else {
      onUnknown(key, where);
    }
  }
  return out;
}

/** Line numbers of top-level keys and of extra_config sub-keys. */
function keyLines(contents: Node | null, lc: LineCounter, prefix = ''): Map<string, number> {
  const lines = new Map<string, number>();
  if (!isMap(contents)) return lines;
  for (const pair of contents.items) {
    const keyNode = pair.key;
    const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
    const start = isScalar(keyNode) && keyNode.range ? keyNode.range[0] : undefined;
    if (start !== undefined) lines.set(prefix + key, lc.linePos(start).line);
    if (!prefix && key === 'extra_config' && isMap(pair.value)) {
      for (const [k, v] of keyLines(pair.value, lc, 'extra_config.')) lines.set(k, v);
    }
  }
  return lines;
}

export function readFileLayers(path: string, named: string, warnings: string[]): SourceLayers {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'not found' : errorMessage(e);
    throw new ConfigError(`config file ${path} (${named}): ${why}`);
  }
  const lc = new LineCounter();
  const doc = parseDocument(text, { ...YAML_OPTIONS, lineCounter: lc });
  const err = doc.errors[0];
  if (err) {
    const pos = err.linePos?.[0];
    const at = pos ? ` line ${pos.line}, column ${pos.col}` : '';
    throw new ConfigError(`config file ${path}${at}: YAML error: ${err.message.split(' at line ')[0]}`);
  }
  for (const w of doc.warnings) warnings.push(`config file ${path}: ${w.message.split('\n')[0]}`);
  let js: unknown;
  try {
    js = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw new ConfigError(`config file ${path}: ${errorMessage(e)}`);
  }
  if (js === null || js === undefined) return emptyLayers();
  if (!isPlainMap(js)) throw new ConfigError(`config file ${path}: the top level must be a mapping of key: value`);
  const lines = keyLines(doc.contents, lc);
  const whereOf = (key: string): string => {
    const line = lines.get(key);
    return line === undefined ? path : `${path} line ${line}`;
  };
  return absorb(js, whereOf, warnings, (key, where) => warnings.push(unknownMessage(key, where)));
}

export function overrideLayers(overrides: Record<string, unknown>, warnings: string[]): SourceLayers {
  return absorb(overrides, (key) => `override ${key}`, warnings, (key) => {
    const near = nearestKey(key);
    throw new ConfigError(`unknown override key ${key}${near ? `; did you mean ${near}?` : ''}`);
  });
}

const ENV_SELF = new Set(['KVTIER_CONFIG_FILE']);

export function envLayers(env: NodeJS.ProcessEnv, warnings: string[]): SourceLayers {
  const out = emptyLayers();
  const present = (name: string, nullable: boolean): boolean =>
    env[name] !== undefined && (env[name]!.trim() !== '' || nullable);
  for (const field of FIELDS) {
    const e = SCHEMA[field];
    const name = [e.env, e.lmcacheEnv].find((n) => present(n, e.default === null));
    if (name === undefined) continue;
    let value: unknown = env[name];
    if (field === 'extraConfig') {
      try {
        value = parse(String(value), YAML_OPTIONS);
      } catch (err) {
        throw new ConfigError(`extra_config (from environment ${name}): not a YAML/JSON mapping: ${errorMessage(err).split('\n')[0].replace(/:$/, '')}`);
      }
      absorbExtra(value, () => `environment ${name}`, out);
    }
    out.top.set(field, { name: e.key, value, origin: `environment ${name}` });
  }
  for (const [oldKey, newKey] of RENAMED) {
    const name = `KVTIER_${oldKey.toUpperCase()}`;
    if (!present(name, false)) continue;
    const field = FIELD_BY_KEY.get(newKey)!;
    warnings.push(renamedMessage(name, SCHEMA[field].env, 'environment'));
    if (!out.top.has(field)) out.top.set(field, { name: oldKey, value: env[name], origin: `environment ${name}` });
  }
  for (const key of LMCACHE_UNIMPLEMENTED) {
    for (const name of [`KVTIER_${key.toUpperCase()}`, `LMCACHE_${key.toUpperCase()}`]) {
      if (present(name, false)) warnings.push(unimplementedMessage(key, `environment ${name}`));
    }
  }
  warnEnvTypos(env, warnings);
  return out;
}

/**
 * KVTIER_* variables that are no setting but look like one. Others are left
 * alone: tests and tools may use their own KVTIER_ variables.
 */
function warnEnvTypos(env: NodeJS.ProcessEnv, warnings: string[]): void {
  const known = new Set<string>([...ENV_SELF, ...FIELDS.map((f) => SCHEMA[f].env)]);
  for (const k of [...RENAMED.keys(), ...LMCACHE_UNIMPLEMENTED]) known.add(`KVTIER_${k.toUpperCase()}`);
  for (const name of Object.keys(env)) {
    if (!name.startsWith('KVTIER_') || known.has(name)) continue;
    const near = nearestKey(name.slice('KVTIER_'.length).toLowerCase());
    if (near) {
      warnings.push(`environment ${name} is not a kvtier setting; ignored; did you mean KVTIER_${near.toUpperCase()}?`);
    }
  }
}
