/**
 * Disk tier: chunks in files under local_disk, kept across daemon restarts,
 * bounded by max_local_disk_size (docs/disk.md has the format and the
 * crash-safety argument).
 *
 *   write(key, slab) ─► reserve bytes (evict LRU) ─► native: XXH3 (sum thread), one pwritev to tmp, header last, rename (I/O thread) ─► index
 *   readInto(key, slab) ─► native: one preadv of header + payload into the slab (I/O thread), XXH3 (sum thread) ─► verify ─► hit
 *
 * Invariants:
 * - only a complete, renamed file is ever indexed, and every read is checked
 *   (magic, version, header checksum, namespace, hash, length, payload
 *   checksum) before it counts as a hit: a torn, truncated, overwritten or
 *   other-namespace file is a miss, deleted and counted in `corrupt`;
 * - usedBytes + bytes reserved by writes in flight stay <= capacityBytes;
 * - ENOSPC, EIO and friends skip the store (counted); nothing is thrown at the
 *   caller for them, the tier keeps serving;
 * - an evicted file's unlink finishes before a new write of the same key is
 *   issued, so a late unlink never removes the newer file.
 * All file I/O runs on the native DiskIo threads; only the index lives here.
 */
import { DiskIo, unlockDiskDir } from '../../native/disk-io.js';
import { diskErrno, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { openDiskDir } from './disk-dir.js';
import { chunkPath, classifyPath, decodeHeader, encodeHeader, fileBytes, isChunkHash, namespaceTag, SCAN_HEAD_BYTES } from './disk-format.js';
import { DiskIndex, type DiskEntry } from './disk-index.js';
import type { Tier } from './tier.js';

/** What names a chunk here: its namespace and hash (a ChunkId has both). */
export interface DiskKey {
  readonly namespaceId: string;
  readonly hash: string;
}

/** The host tier's key form, which the index uses too. */
function keyOf(key: DiskKey): string {
  return `${key.namespaceId}:${key.hash}`;
}

export interface DiskTierOptions {
  /** The local_disk directory (already a path, not a file:// URL). */
  dir: string;
  capacityBytes: number;
  ioThreads: number;
  /** disk_direct_io. */
  direct: 'auto' | boolean;
  /** fdatasync each file before its rename (power-loss durability; off by default: see docs/disk.md). */
  sync?: boolean;
  /** posix_fadvise(DONTNEED) before buffered reads, for cold-cache benches. */
  dropCacheOnRead?: boolean;
  logger?: Logger;
}

export interface DiskTierStats {
  dir: string;
  direct: boolean;
  entries: number;
  usedBytes: number;
  capacityBytes: number;
  hits: number;
  misses: number;
  readBytes: number;
  writes: number;
  writtenBytes: number;
  evictions: number;
  evictedBytes: number;
  /** Stores skipped: no room even after eviction (a chunk bigger than the tier), or ENOSPC. */
  skippedFull: number;
  /** Stores skipped or reads missed for another I/O error (EIO...). */
  ioErrors: number;
  /** Files that failed verification (torn, truncated, overwritten, other namespace): deleted. */
  corrupt: number;
  /** Chunks indexed from what was on disk at start. */
  rebuiltEntries: number;
  /** Leftover temporary files deleted at start. */
  removedTemp: number;
}

export class DiskTier implements Tier {
  readonly name = 'disk' as const;
  readonly dir: string;
  readonly capacityBytes: number;
  readonly direct: boolean;
  #io: DiskIo;
  #lockFd: number;
  #index = new DiskIndex();
  #opts: DiskTierOptions;
  #reserved = 0;
  #writing = new Set<string>();
  /** Keys removed while their write was in flight: the file is deleted when it lands, never indexed. */
  #cancelled = new Set<string>();
  #removing = new Map<string, Promise<unknown>>();
  #inflight = new Set<Promise<unknown>>();
  #seq = 0;
  #closed = false;
  #s = { hits: 0, misses: 0, readBytes: 0, writes: 0, writtenBytes: 0, evictions: 0, evictedBytes: 0, skippedFull: 0, ioErrors: 0, corrupt: 0, rebuiltEntries: 0, removedTemp: 0 };

  private constructor(opts: DiskTierOptions, io: DiskIo, lockFd: number, direct: boolean) {
    this.#opts = opts;
    this.dir = opts.dir;
    this.capacityBytes = opts.capacityBytes;
    this.#io = io;
    this.#lockFd = lockFd;
    this.direct = direct;
  }

  /**
   * Checks and locks the directory (ConfigError / DiskLockedError: the daemon
   * exits 2), then rebuilds the index from the headers on disk.
   */
  static async open(opts: DiskTierOptions): Promise<DiskTier> {
    const opened = openDiskDir(opts.dir, opts.direct);
    if (opened.directNote !== '') opts.logger?.warn(`local_disk ${opts.dir}: ${opened.directNote}`);
    let io: DiskIo;
    try {
      io = new DiskIo(opts.ioThreads);
    } catch (e) {
      unlockDiskDir(opened.lockFd);
      throw e;
    }
    const tier = new DiskTier(opts, io, opened.lockFd, opened.direct);
    try {
      await tier.#rebuild();
    } catch (e) {
      await tier.close();
      throw e;
    }
    return tier;
  }

  /** By host key (`${namespaceId}:${hash}`). */
  has(key: string): boolean {
    return this.#index.has(key);
  }

  /** Payload bytes of an indexed chunk, so the caller can reserve a slab of that size. */
  lengthOf(key: string): number | undefined {
    return this.#index.get(key)?.length;
  }

  stats(): DiskTierStats {
    return { dir: this.dir, direct: this.direct, entries: this.#index.size, usedBytes: this.#index.usedBytes, capacityBytes: this.capacityBytes, ...this.#s };
  }

  /**
   * Stores src (a host slab, ideally: page aligned, so O_DIRECT takes it as
   * is). false when skipped (no room, I/O error, closed); the caller keeps
   * src unchanged until this settles.
   */
  async write(key: DiskKey, src: Buffer): Promise<boolean> {
    const k = keyOf(key);
    if (this.#closed || !isChunkHash(key.hash)) return false;
    if (this.#writing.has(k)) return true;
    const need = fileBytes(src.length);
    if (!this.#makeRoom(need)) {
      this.#s.skippedFull++;
      return false;
    }
    const path = chunkPath(this.dir, key.namespaceId, key.hash);
    this.#reserved += need;
    this.#writing.add(k);
    // A write replaces the file of the same key: drop the old entry first.
    const old = this.#index.remove(k);
    const p = this.#track((async () => {
      try {
        await this.#removing.get(path);
        const tmp = `${path}.${process.pid}-${++this.#seq}.tmp`;
        const h = encodeHeader(key.namespaceId, key.hash, src.length);
        await this.#io.writeChunk({ tmpPath: tmp, finalPath: path, header: h.header, payload: src, sumOffset: h.sumOffset, headerSumOffset: h.headerSumOffset, direct: this.direct, sync: this.#opts.sync === true });
        if (this.#cancelled.has(k)) {
          this.#unlinkLater([path]);
          return false;
        }
        this.#index.add({ key: k, path, length: src.length, fileBytes: need });
        this.#s.writes++;
        this.#s.writtenBytes += src.length;
        return true;
      } catch (e) {
        if (old !== undefined) this.#unlinkLater([old.path]);
        this.#countIoError(e, 'write');
        return false;
      } finally {
        this.#reserved -= need;
        this.#writing.delete(k);
        this.#cancelled.delete(k);
      }
    })());
    return p;
  }

  /**
   * Reads a chunk into dest (exactly lengthOf(key) bytes; a host slab, ideally)
   * and verifies it. false: a miss; dest then holds garbage.
   */
  async readInto(key: DiskKey, dest: Buffer): Promise<boolean> {
    const entry = this.#index.get(keyOf(key));
    if (this.#closed || entry === undefined || entry.length !== dest.length) {
      this.#s.misses++;
      return false;
    }
    return this.#track(this.#readEntry(entry, key, dest));
  }

  async #readEntry(entry: DiskEntry, key: DiskKey, dest: Buffer): Promise<boolean> {
    let why: string;
    try {
      const r = await this.#io.readChunk(entry.path, dest, { direct: this.direct, dropCache: this.#opts.dropCacheOnRead });
      why = r.complete ? '' : `file of ${r.fileSize} bytes, expected ${entry.fileBytes} (torn or truncated)`;
      if (why === '') {
        const h = decodeHeader(r.header!);
        if (typeof h === 'string') why = h;
        else if (h.namespaceId !== key.namespaceId || h.hash !== key.hash) why = `header names ${h.namespaceId}:${h.hash}`;
        else if (h.length !== entry.length) why = `header length ${h.length}, expected ${entry.length}`;
        else if (h.payloadSum !== r.sum) why = 'payload checksum mismatch';
      }
    } catch (e) {
      this.#s.misses++;
      if (this.#index.removeEntry(entry) && diskErrno(e) !== 'ENOENT') this.#countIoError(e, 'read');
      return false;
    }
    if (why !== '') {
      this.#s.misses++;
      this.#s.corrupt++;
      this.#opts.logger?.warn('disk tier: a chunk file failed verification; deleted', { path: entry.path, why });
      if (this.#index.removeEntry(entry)) this.#unlinkLater([entry.path]);
      return false;
    }
    this.#index.touch(entry);
    this.#s.hits++;
    this.#s.readBytes += dest.length;
    return true;
  }

  /** Removes a chunk; true when it was indexed. */
  remove(key: string): boolean {
    const writing = this.#writing.has(key);
    if (writing) this.#cancelled.add(key);
    const entry = this.#index.remove(key);
    if (entry === undefined) return writing;
    this.#unlinkLater([entry.path]);
    return true;
  }

  /** Admin (kvtier ls): chunks and payload bytes per namespace, or of one. */
  usage(namespaceId: string | null): Map<string, { chunks: number; bytes: number }> {
    const out = new Map<string, { chunks: number; bytes: number }>();
    for (const e of this.#index.entries()) {
      const ns = e.key.slice(0, e.key.indexOf(':'));
      if (namespaceId !== null && ns !== namespaceId) continue;
      let u = out.get(ns);
      if (u === undefined) out.set(ns, (u = { chunks: 0, bytes: 0 }));
      u.chunks++;
      u.bytes += e.length;
    }
    return out;
  }

  /** Removes every chunk of a namespace. */
  removeNamespace(namespaceId: string): number {
    const prefix = `${namespaceId}:`;
    const gone: string[] = [];
    for (const k of this.#writing) if (k.startsWith(prefix)) this.#cancelled.add(k);
    for (const e of [...this.#index.entries()]) {
      if (e.key.startsWith(prefix) && this.#index.removeEntry(e)) gone.push(e.path);
    }
    this.#unlinkLater(gone);
    return gone.length;
  }

  async contains(keys: readonly DiskKey[]): Promise<boolean[]> {
    return keys.map((k) => this.#index.has(keyOf(k)));
  }

  async get(key: DiskKey): Promise<Buffer | null> {
    const length = this.lengthOf(keyOf(key));
    if (length === undefined) {
      this.#s.misses++;
      return null;
    }
    const dest = Buffer.alloc(length);
    return (await this.readInto(key, dest)) ? dest : null;
  }

  /** Tier contract: write, with payload copied first so the caller may reuse its buffer at once. */
  async put(key: DiskKey, payload: Buffer): Promise<boolean> {
    return this.write(key, Buffer.from(payload));
  }

  async delete(keys: readonly DiskKey[]): Promise<number> {
    let n = 0;
    for (const k of keys) if (this.remove(keyOf(k))) n++;
    return n;
  }

  /** Waits for I/O in flight, then stops the threads and drops the lock. Files stay. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
    this.#io.close();
    unlockDiskDir(this.#lockFd);
  }

  /** Evicts LRU entries until `need` more bytes fit; false when they cannot. */
  #makeRoom(need: number): boolean {
    if (need > this.capacityBytes) return false;
    const gone: string[] = [];
    while (this.#index.usedBytes + this.#reserved + need > this.capacityBytes) {
      const victim = this.#index.popOldest();
      if (victim === undefined) break;
      this.#s.evictions++;
      this.#s.evictedBytes += victim.length;
      gone.push(victim.path);
    }
    this.#unlinkLater(gone);
    return this.#index.usedBytes + this.#reserved + need <= this.capacityBytes;
  }

  #unlinkLater(paths: string[]): void {
    if (paths.length === 0) return;
    const p = this.#track(this.#io.remove(paths).catch((e: unknown) => {
      this.#opts.logger?.warn('disk tier: unlink failed', { error: errorMessage(e) });
    }));
    for (const path of paths) this.#removing.set(path, p);
    void p.then(() => {
      for (const path of paths) if (this.#removing.get(path) === p) this.#removing.delete(path);
    });
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#inflight.add(p);
    void p.finally(() => this.#inflight.delete(p)).catch(() => {});
    return p;
  }

  #countIoError(e: unknown, op: 'read' | 'write'): void {
    const errno = diskErrno(e);
    if (op === 'write' && (errno === 'ENOSPC' || errno === 'EDQUOT')) this.#s.skippedFull++;
    else this.#s.ioErrors++;
    this.#opts.logger?.warn(`disk tier: ${op} failed; ${op === 'write' ? 'store skipped' : 'a miss'}`, { error: errorMessage(e) });
  }

  /** The index from what is on disk: headers verified, temp files and bad files deleted, LRU by mtime. */
  async #rebuild(): Promise<void> {
    const scan = await this.#io.scan(this.dir, SCAN_HEAD_BYTES);
    const found: Array<{ entry: DiskEntry; mtime: number }> = [];
    const bad: string[] = [];
    const temp: string[] = [];
    scan.paths.forEach((path, i) => {
      const c = classifyPath(this.dir, path);
      if (c.kind === 'tmp') temp.push(path);
      if (c.kind !== 'chunk') return;
      const h = decodeHeader(scan.heads[i]);
      if (typeof h === 'string' || h.hash !== c.hash || namespaceTag(h.namespaceId) !== c.tag || scan.sizes[i] !== fileBytes(h.length)) {
        bad.push(path);
        return;
      }
      found.push({ entry: { key: `${h.namespaceId}:${h.hash}`, path, length: h.length, fileBytes: fileBytes(h.length) }, mtime: scan.mtimes[i] });
    });
    found.sort((a, b) => a.mtime - b.mtime);
    for (const f of found) this.#index.add(f.entry);
    this.#s.rebuiltEntries = found.length;
    this.#s.corrupt += bad.length;
    this.#s.removedTemp = temp.length;
    this.#makeRoom(0);
    this.#s.rebuiltEntries = this.#index.size;
    await this.#io.remove([...bad, ...temp]);
    if (bad.length > 0) this.#opts.logger?.warn('disk tier: files that failed header verification at start were deleted', { count: bad.length });
  }
}
