/**
 * The disk tier's on-disk format (docs/disk.md): one file per chunk,
 *
 *   <root>/<hash[0:2]>/<namespace tag>-<hash>.kvc
 *
 *   offset 0      4096-byte header block (fields below, then zeros)
 *   offset 4096   payload, zero padded to a whole 4096-byte block
 *
 *   header: magic "KVTDISK1" | u32 version | u32 flags (0) | u32 length lo | u32 length hi
 *           | f64 created ms | u16 namespace bytes | u16 hash bytes | 16 hex XXH3-64(payload)
 *           | namespace id | hash hex | 16 hex xxh64(header bytes before this field)
 *
 * Version 2 changed the payload checksum from xxh64 to XXH3-64 (faster on
 * every byte read; native/src/checksum.h). Files of version 1 fail the
 * version check at start and are deleted like any unreadable file: a
 * disk cache does not survive that upgrade, it is rebuilt.
 *
 * A file is written under `<final>.<pid>-<seq>.tmp` and renamed into place
 * once complete (native/src/disk/disk-file.cc); the two checksums are filled
 * in there, off the JS thread. Names outside these patterns are never read
 * or deleted: local_disk may point at a directory that holds other files.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { headerChecksum } from './checksum.js';

export const DISK_FORMAT_VERSION = 2;
export const HEADER_BYTES = 4096;
const MAGIC = Buffer.from('KVTDISK1', 'latin1');
const FIXED = 52;
const PAYLOAD_SUM_AT = 36;

const NAME_RE = /^([0-9a-f]{32})-([0-9a-f]{64})\.kvc$/;
const TMP_RE = /^[0-9a-f]{32}-[0-9a-f]{64}\.kvc\.[0-9]+-[0-9]+\.tmp$/;
const SUBDIR_RE = /^[0-9a-f]{2}$/;

/** Bytes a chunk of `length` takes on disk: the header block and the padded payload. */
export function fileBytes(length: number): number {
  return HEADER_BYTES + Math.ceil(length / HEADER_BYTES) * HEADER_BYTES;
}

const tags = new Map<string, string>();

/**
 * The namespace in a file name: a daemon's namespace id (32 hex digits) as
 * it is, any other string as the first 32 hex digits of its SHA-256. The
 * header holds the full id; the name only spreads and finds files.
 */
export function namespaceTag(namespaceId: string): string {
  if (/^[0-9a-f]{32}$/.test(namespaceId)) return namespaceId;
  let tag = tags.get(namespaceId);
  if (tag === undefined) {
    tag = createHash('sha256').update(namespaceId).digest('hex').slice(0, 32);
    if (tags.size < 1024) tags.set(namespaceId, tag);
  }
  return tag;
}

/** A chunk hash the disk tier can name a file after: 64 lowercase hex digits. */
export function isChunkHash(hash: string): boolean {
  return /^[0-9a-f]{64}$/.test(hash);
}

export function chunkPath(root: string, namespaceId: string, hash: string): string {
  return join(root, hash.slice(0, 2), `${namespaceTag(namespaceId)}-${hash}.kvc`);
}

export function subdirNames(): string[] {
  return Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
}

export type DiskFileKind =
  | { kind: 'chunk'; tag: string; hash: string }
  | { kind: 'tmp' }
  | { kind: 'foreign' };

/** What a path found by the scan is, from its name alone. */
export function classifyPath(root: string, path: string): DiskFileKind {
  const rel = path.startsWith(`${root}/`) ? path.slice(root.length + 1) : '';
  const slash = rel.indexOf('/');
  if (slash !== 2 || !SUBDIR_RE.test(rel.slice(0, 2))) return { kind: 'foreign' };
  const name = rel.slice(3);
  const m = NAME_RE.exec(name);
  if (m !== null && m[2].startsWith(rel.slice(0, 2))) return { kind: 'chunk', tag: m[1], hash: m[2] };
  return TMP_RE.test(name) ? { kind: 'tmp' } : { kind: 'foreign' };
}

export interface HeaderTemplate {
  header: Buffer;
  sumOffset: number;
  headerSumOffset: number;
}

/** A header block with both checksum fields left for the writer (native) to fill. */
export function encodeHeader(namespaceId: string, hash: string, length: number, createdMs = Date.now()): HeaderTemplate {
  const ns = Buffer.from(namespaceId, 'utf8');
  const h = Buffer.from(hash, 'utf8');
  const header = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(header, 0);
  header.writeUInt32LE(DISK_FORMAT_VERSION, 8);
  header.writeUInt32LE(0, 12);
  header.writeUInt32LE(length % 2 ** 32, 16);
  header.writeUInt32LE(Math.floor(length / 2 ** 32), 20);
  header.writeDoubleLE(createdMs, 24);
  header.writeUInt16LE(ns.length, 32);
  header.writeUInt16LE(h.length, 34);
  ns.copy(header, FIXED);
  h.copy(header, FIXED + ns.length);
  return { header, sumOffset: PAYLOAD_SUM_AT, headerSumOffset: FIXED + ns.length + h.length };
}

export interface DecodedHeader {
  namespaceId: string;
  hash: string;
  length: number;
  createdMs: number;
  payloadSum: string;
}

/** The header's fields when magic, version, sizes and its own checksum hold; else why not. */
export function decodeHeader(head: Uint8Array): DecodedHeader | string {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (b.length < FIXED || !b.subarray(0, 8).equals(MAGIC)) return 'bad magic';
  const version = b.readUInt32LE(8);
  if (version !== DISK_FORMAT_VERSION) return `format version ${version}, expected ${DISK_FORMAT_VERSION}`;
  const nsLen = b.readUInt16LE(32);
  const hashLen = b.readUInt16LE(34);
  const sumAt = FIXED + nsLen + hashLen;
  if (sumAt + 16 > b.length) return 'header fields overrun the header';
  const want = b.toString('latin1', sumAt, sumAt + 16);
  if (headerChecksum(b.subarray(0, sumAt)) !== want) return 'header checksum mismatch';
  return {
    namespaceId: b.toString('utf8', FIXED, FIXED + nsLen),
    hash: b.toString('utf8', FIXED + nsLen, sumAt),
    length: b.readUInt32LE(16) + b.readUInt32LE(20) * 2 ** 32,
    createdMs: b.readDoubleLE(24),
    payloadSum: b.toString('latin1', PAYLOAD_SUM_AT, PAYLOAD_SUM_AT + 16),
  };
}

/** Bytes of the header the start-up scan reads: every field fits in the first 512 for our names. */
export const SCAN_HEAD_BYTES = 512;
