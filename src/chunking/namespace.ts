/**
 * Namespace fingerprint: what makes two workers' KV interchangeable.
 *
 * Hash version 2 splits it in two, so that one Lookup hashes a prompt once
 * for every rank of a TP/PP engine:
 *
 *   chain root  root = SHA-256("kvtier-chain-v2\n" + every field but tp_rank, pp_rank)
 *               h0 of every prefix hash chain (prefix-hash.ts): the same for all ranks
 *   rank id     id   = hex(SHA-256("kvtier-namespace-v2\n" + every field)[0:16])
 *
 * A chunk's identity is the pair (rank id, h_i): ChunkId's host key and
 * Valkey key `{<id>:<h_i hex>}`. Per-rank identity thus costs no hashing at
 * all, and two clients still share a chunk only when every field matches.
 * The text encoding has a fixed field order so that any language reproduces
 * it byte for byte (test/vectors/prefix-hash.json, scripts/gen-hash-vectors.py):
 *
 *   "kvtier-namespace-v2\n" + "model=<model>\n" + "dtype=<dtype>\n" + ...
 *
 * Values must not contain a newline or NUL: that would make two different
 * fingerprints encode to the same bytes. Version 1 keys (rank in h0) miss.
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
  /** h0 = SHA-256(canonical chain bytes: the fingerprint without its ranks), 32 bytes. */
  root: Buffer;
  /** 16 bytes of SHA-256(canonical fingerprint) in hex: the rank's name in keys and logs. */
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

const RANK_FIELDS = new Set<keyof NamespaceFingerprint>(['tpRank', 'ppRank']);

function encode(fp: NamespaceFingerprint, header: string, withRanks: boolean): Buffer {
  let text = header;
  for (const [field, name] of FIELDS) {
    if (!withRanks && RANK_FIELDS.has(field)) continue;
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

/** The bytes the rank id hashes: every field. */
export function canonicalFingerprint(fp: NamespaceFingerprint): Buffer {
  return encode(fp, 'kvtier-namespace-v2\n', true);
}

/** The bytes the chain root hashes: every field but tp_rank and pp_rank. */
export function canonicalChain(fp: NamespaceFingerprint): Buffer {
  return encode(fp, 'kvtier-chain-v2\n', false);
}

export function makeNamespace(fp: NamespaceFingerprint): Namespace {
  const root = createHash('sha256').update(canonicalChain(fp)).digest();
  const id = internalized(createHash('sha256').update(canonicalFingerprint(fp)).digest().toString('hex', 0, 16));
  return { fingerprint: { ...fp }, root, id };
}

/**
 * The engine's internalized copy of `s` (property keys are internalized).
 * A multi-rank Lookup compares every rank's namespace id with the ids of a
 * position's host entries; two internalized strings compare by pointer,
 * two fresh ones by their characters in a builtin call each.
 */
function internalized(s: string): string {
  return Object.keys({ [s]: 0 })[0];
}

/** The namespace of another rank of the same engine: same chain root, its own id. */
export function rankNamespace(ns: Namespace, tpRank: number, ppRank: number): Namespace {
  if (tpRank === ns.fingerprint.tpRank && ppRank === ns.fingerprint.ppRank) return ns;
  return makeNamespace({ ...ns.fingerprint, tpRank, ppRank });
}
