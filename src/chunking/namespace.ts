/**
 * Namespace fingerprint: what makes two workers' KV interchangeable.
 *
 * The canonical bytes below are hashed into h0, the root of every prefix
 * hash chain, so two clients share chunks only when every field matches.
 * The encoding is plain text with a fixed field order so that any language
 * can reproduce it byte for byte (test/vectors/prefix-hash.json checks it):
 *
 *   "kvtier-namespace-v1\n" + "model=<model>\n" + "dtype=<dtype>\n" + ...
 *
 * Values must not contain a newline or NUL: that would make two different
 * fingerprints encode to the same bytes.
 */
import { createHash } from 'node:crypto';
import { BadRequestError } from '../errors.js';

export interface NamespaceFingerprint {
  model: string;
  dtype: string;
  kvLayout: string;
  chunkSize: number;
  blockSize: number;
  tpRank: number;
  tpSize: number;
  ppRank: number;
  ppSize: number;
  mla: boolean;
  cacheSalt: string;
}

export interface Namespace {
  fingerprint: NamespaceFingerprint;
  /** h0 = SHA-256(canonical fingerprint bytes), 32 bytes. */
  root: Buffer;
  /** First 16 bytes of h0 in hex: the namespace's name in keys and logs. */
  id: string;
}

const FIELDS: ReadonlyArray<[keyof NamespaceFingerprint, string]> = [
  ['model', 'model'],
  ['dtype', 'dtype'],
  ['kvLayout', 'kv_layout'],
  ['chunkSize', 'chunk_size'],
  ['blockSize', 'block_size'],
  ['tpRank', 'tp_rank'],
  ['tpSize', 'tp_size'],
  ['ppRank', 'pp_rank'],
  ['ppSize', 'pp_size'],
  ['mla', 'mla'],
  ['cacheSalt', 'cache_salt'],
];

export function canonicalFingerprint(fp: NamespaceFingerprint): Buffer {
  let text = 'kvtier-namespace-v1\n';
  for (const [field, name] of FIELDS) {
    const value = fp[field];
    let encoded: string;
    if (typeof value === 'boolean') {
      encoded = value ? '1' : '0';
    } else if (typeof value === 'number') {
      if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
        throw new BadRequestError(`expected an unsigned 32-bit integer for fingerprint ${name}, got ${value}`);
      }
      encoded = String(value);
    } else {
      if (/[\n\0]/.test(value)) {
        throw new BadRequestError(`fingerprint ${name} must not contain a newline or NUL`);
      }
      encoded = value;
    }
    text += `${name}=${encoded}\n`;
  }
  return Buffer.from(text, 'utf8');
}

export function makeNamespace(fp: NamespaceFingerprint): Namespace {
  const root = createHash('sha256').update(canonicalFingerprint(fp)).digest();
  return { fingerprint: { ...fp }, root, id: root.toString('hex', 0, 16) };
}
