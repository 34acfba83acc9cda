/**
 * The disk tier's file I/O in the addon (native/src/disk/), checked here:
 * every file operation runs on the DiskIo's own threads and settles a
 * Promise; only the start-up probe and the directory lock are synchronous.
 * Rejections are NativeCodedError: KVT_DISK_IO with a message that starts
 * with the errno name ("ENOSPC: write <path>: ..."), so the tier can count
 * ENOSPC and EIO apart; KVT_BAD_REQUEST for bad arguments; KVT_DISK_LOCKED
 * from lockDiskDir.
 */
import { ErrorCode } from '../proto/constants.js';
import { NativeCodedError, badRequest, coded, messageOf } from './errors.js';
import { load } from './loader.js';

function diskBinding(): DiskBinding {
  return load();
}

/** Header block and O_DIRECT alignment of every chunk file (disk-file.h). */
export const DISK_BLOCK = 4096;

export interface DiskReadResult {
  /** The file had exactly the header block and the padded payload; false: torn or truncated. */
  complete: boolean;
  fileSize: number;
  /** The 4096-byte header block, when complete. */
  header: Buffer | null;
  /** XXH3-64 (16 hex digits) of the payload bytes that landed, when complete. */
  sum: string;
  /** O_DIRECT was used (asked for, the filesystem took it, the buffer is aligned). */
  direct: boolean;
}

export interface DiskScanResult {
  paths: string[];
  heads: Buffer[];
  sizes: Float64Array;
  mtimes: Float64Array;
}

interface DiskIoBinding {
  readonly threads: number;
  write(tmpPath: string, finalPath: string, header: Uint8Array, payload: Uint8Array, sumOffset: number, headerSumOffset: number, direct: boolean, sync: boolean): Promise<{ direct: boolean }>;
  read(path: string, dest: Uint8Array, direct: boolean, dropCache: boolean): Promise<DiskReadResult>;
  writePlain(path: string, src: Uint8Array, offset: number, direct: boolean): Promise<void>;
  readPlain(path: string, dest: Uint8Array, offset: number, direct: boolean, dropCache: boolean): Promise<void>;
  scan(root: string, headBytes: number): Promise<DiskScanResult>;
  remove(paths: string[]): Promise<number>;
  close(): void;
}

export interface DiskBinding {
  DiskIo: new (threads: number) => DiskIoBinding;
  diskProbe(dir: string, direct: boolean): string;
  diskLock(path: string): number;
  diskUnlock(fd: number): void;
}

async function settle<T>(p: () => Promise<T>): Promise<T> {
  try {
    return await p();
  } catch (e) {
    throw coded(e);
  }
}

export interface ChunkWrite {
  tmpPath: string;
  finalPath: string;
  /** DISK_BLOCK bytes; the two checksum fields are filled in off-thread. */
  header: Uint8Array;
  payload: Uint8Array;
  /** Where the 16 hex digits of XXH3-64(payload) go. */
  sumOffset: number;
  /** Where the 16 hex digits of xxh64(header[0, headerSumOffset)) go, after the payload's. */
  headerSumOffset: number;
  direct: boolean;
  /** fdatasync before the rename. */
  sync: boolean;
}

/** A pool of `threads` I/O threads of its own; close() after every call has settled. */
export class DiskIo {
  #io: DiskIoBinding;

  constructor(threads: number) {
    if (!Number.isSafeInteger(threads) || threads < 1 || threads > 64) {
      throw badRequest(`expected an integer 1..64 for disk I/O threads, got ${threads}`);
    }
    try {
      this.#io = new (diskBinding().DiskIo)(threads);
    } catch (e) {
      throw coded(e);
    }
  }

  get threads(): number {
    return this.#io.threads;
  }

  /** Writes a chunk file under tmpPath and renames it to finalPath; the temporary file is gone on failure. */
  writeChunk(w: ChunkWrite): Promise<{ direct: boolean }> {
    if (w.header.byteLength !== DISK_BLOCK) throw badRequest(`expected ${DISK_BLOCK} bytes for a disk header, got ${w.header.byteLength}`);
    return settle(() => this.#io.write(w.tmpPath, w.finalPath, w.header, w.payload, w.sumOffset, w.headerSumOffset, w.direct, w.sync));
  }

  /** Reads a chunk file's header and payload (dest.length bytes) and checksums the payload. */
  readChunk(path: string, dest: Uint8Array, opts: { direct: boolean; dropCache?: boolean }): Promise<DiskReadResult> {
    return settle(() => this.#io.read(path, dest, opts.direct, opts.dropCache === true));
  }

  writePlain(path: string, src: Uint8Array, offset: number, direct: boolean): Promise<void> {
    return settle(() => this.#io.writePlain(path, src, offset, direct));
  }

  readPlain(path: string, dest: Uint8Array, offset: number, opts: { direct: boolean; dropCache?: boolean }): Promise<void> {
    return settle(() => this.#io.readPlain(path, dest, offset, opts.direct, opts.dropCache === true));
  }

  /** Every regular file one directory below root, with its first headBytes bytes. */
  scan(root: string, headBytes: number): Promise<DiskScanResult> {
    return settle(() => this.#io.scan(root, headBytes));
  }

  /** Unlinks the files; how many existed. */
  remove(paths: string[]): Promise<number> {
    return paths.length === 0 ? Promise.resolve(0) : settle(() => this.#io.remove(paths));
  }

  close(): void {
    this.#io.close();
  }
}

/** '' when a file can be created, written and read back in dir (with O_DIRECT when asked), else why not. */
export function probeDiskDir(dir: string, direct: boolean): string {
  return diskBinding().diskProbe(dir, direct);
}

/** An exclusive lock on path (created); its fd. Throws KVT_DISK_LOCKED naming the holder. */
export function lockDiskDir(path: string): number {
  try {
    return diskBinding().diskLock(path);
  } catch (e) {
    const c = coded(e);
    if (c.code !== ErrorCode.KVT_DISK_LOCKED) throw c;
    const pid = (e as { heldBy?: number }).heldBy ?? 0;
    throw new NativeCodedError(ErrorCode.KVT_DISK_LOCKED, `${path} is ${messageOf(e)}${pid > 0 ? ` (pid ${pid})` : ''}: two kvtier daemons cannot share one local_disk directory`);
  }
}

export function unlockDiskDir(fd: number): void {
  diskBinding().diskUnlock(fd);
}
