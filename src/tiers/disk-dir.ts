/**
 * Opening a local_disk directory at start: what makes it unusable is a
 * ConfigError naming the key and the reason (the daemon exits 2), found with
 * real file operations rather than guessed from mode bits: a probe file is
 * created, written and read back (with O_DIRECT when disk_direct_io asks for
 * it: tmpfs takes O_DIRECT only on newer kernels). Then the lock file, so
 * that two daemons never share one directory (DiskLockedError, also exit 2),
 * and the 256 fan-out subdirectories.
 */
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, DiskLockedError, errorMessage } from '../errors.js';
import { lockDiskDir, probeDiskDir, unlockDiskDir } from '../../native/disk-io.js';
import { subdirNames } from './disk-format.js';

export const LOCK_FILE = 'kvtier.lock';

export interface OpenedDiskDir {
  /** The lock file's fd; closed by unlockDiskDir. */
  lockFd: number;
  direct: boolean;
  /** Why O_DIRECT is not used, when it was asked for as auto; '' otherwise. */
  directNote: string;
}

function unusable(dir: string, reason: string): ConfigError {
  return new ConfigError(`local_disk: ${dir} cannot be used: ${reason}`);
}

export function openDiskDir(dir: string, direct: 'auto' | boolean): OpenedDiskDir {
  let st;
  try {
    st = statSync(dir);
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw unusable(dir, code === 'ENOENT' ? 'it does not exist (create it first)' : errorMessage(e));
  }
  if (!st.isDirectory()) throw unusable(dir, 'it is not a directory');
  let useDirect = direct !== false;
  let directNote = '';
  let why = probeDiskDir(dir, useDirect);
  if (why !== '' && direct === 'auto') {
    const buffered = probeDiskDir(dir, false);
    if (buffered === '') {
      directNote = `O_DIRECT not used: ${why}`;
      useDirect = false;
    }
    why = buffered;
  }
  if (why !== '') throw unusable(dir, why);
  const lockFd = lockDiskDir(join(dir, LOCK_FILE));
  for (const sub of subdirNames()) {
    try {
      mkdirSync(join(dir, sub), { recursive: true });
    } catch (e) {
      unlockDiskDir(lockFd);
      throw unusable(dir, `cannot create its subdirectory ${sub}: ${errorMessage(e)}`);
    }
  }
  return { lockFd, direct: useDirect, directNote };
}

/**
 * For `kvtier doctor`: whether the directory would open, without taking it
 * over (the lock is tried and dropped at once; a running daemon holding it
 * is reported, not a failure).
 */
export function diskDirReport(dir: string, direct: 'auto' | boolean): { ok: boolean; message: string } {
  try {
    const opened = openDiskDir(dir, direct);
    unlockDiskDir(opened.lockFd);
    return { ok: true, message: `${dir}: writable, ${opened.direct ? 'O_DIRECT' : `page cache${opened.directNote === '' ? '' : ` (${opened.directNote})`}`}, not in use` };
  } catch (e) {
    if (e instanceof DiskLockedError) return { ok: true, message: `${dir}: in use by a running daemon (${e.message})` };
    return { ok: false, message: errorMessage(e) };
  }
}
