/**
 * proto/constants.json is the one table of cross-language constants (error
 * codes, the skip-block sentinel, protocol version and frame limits). The
 * generated TS, C++ and Python must match it, and no code outside the
 * generated files spells a code or the sentinel out.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../bench/daemon-process.js';
import { ERROR_CODES_FOR_TEST } from './constants-fixture.js';
import { ErrorCode, PROTOCOL_VERSION, RETIRED_ERROR_CODES, SKIP_BLOCK } from '../../proto/constants.js';
import * as errors from '../../src/errors.js';

const root = packageRoot();
const GENERATED = new Set([
  'proto/constants.ts', 'native/src/constants.h',
  'integrations/python/kvtier/constants.py', 'integrations/python/kvtier/errors.py',
]);
const SCANNED = ['src', 'native', 'bench', 'integrations/python/kvtier'];
const SOURCE = /\.(ts|mts|mjs|js|cc|h|cu|cuh|py)$/;

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, dir))) {
    const rel = join(dir, name);
    if (name === 'gen' || name === '__pycache__' || name === 'node_modules') continue;
    if (statSync(join(root, rel)).isDirectory()) out.push(...sources(rel));
    else if (SOURCE.test(name) && !GENERATED.has(rel)) out.push(rel);
  }
  return out;
}

function offending(pattern: RegExp, allow: (line: string) => boolean = () => false): string[] {
  const hits: string[] = [];
  for (const file of SCANNED.flatMap(sources)) {
    readFileSync(join(root, file), 'utf8').split('\n').forEach((line, i) => {
      if (pattern.test(line) && !allow(line)) hits.push(`${relative(root, join(root, file))}:${i + 1}: ${line.trim()}`);
    });
  }
  return hits;
}

describe('the constants table', () => {
  it('the generated files are up to date (node scripts/build-constants.mjs --check)', () => {
    const r = spawnSync(process.execPath, [join(root, 'scripts/build-constants.mjs'), '--check'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('holds what the wire already speaks', () => {
    expect(PROTOCOL_VERSION).toBe(1);
    expect(SKIP_BLOCK).toBe(0xffffffff);
    expect(Object.values(ErrorCode)).toEqual(ERROR_CODES_FOR_TEST);
    for (const retired of RETIRED_ERROR_CODES) expect(Object.values(ErrorCode)).not.toContain(retired);
  });

  it('every class in src/errors.ts carries a code of the table, each code at most one class', () => {
    const classes = Object.values(errors).filter((v): v is typeof errors.KvtierError => typeof v === 'function' && v.prototype instanceof errors.KvtierError);
    const codes = classes.map((c) => c.code);
    expect(codes.every((c) => c !== undefined && Object.values(ErrorCode).includes(c))).toBe(true);
    expect(new Set(codes).size).toBe(codes.length);
    expect(codes).toContain(ErrorCode.KVT_USAGE);
  });

  it('no error code is spelled out as a string literal outside the generated code', () => {
    expect(offending(/["'`]KVT_[A-Z_]+["'`]/)).toEqual([]);
  });

  it('no skip-block sentinel literal outside the generated code (u32 range checks with < or > aside)', () => {
    expect(offending(/0x[fF]{8}\b|4294967295/, (line) => /[<>]/.test(line.replace(/=>/g, '')))).toEqual([]);
  });
});
