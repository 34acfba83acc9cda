/**
 * Opening a local_disk directory: unusable paths are ConfigErrors naming the
 * key and the reason, and a second tier (in this process or another) over a
 * locked directory gets KVT_DISK_LOCKED naming the holder.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, DiskLockedError } from '../../src/errors.js';
import { diskDir, openDisk, removeDiskDirs } from './disk-helpers.js';

afterAll(removeDiskDirs);

async function refused(dir: string, o: Parameters<typeof openDisk>[1] = {}): Promise<Error> {
  try {
    const t = await openDisk(dir, o);
    await t.close();
  } catch (e) {
    return e as Error;
  }
  throw new Error(`${dir} was accepted`);
}

describe('local_disk directory checks', () => {
  it('refuses a missing directory', async () => {
    const e = await refused(join(diskDir(), 'nope'));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toMatch(/^local_disk: .*nope cannot be used: it does not exist/);
  });

  it('refuses a file', async () => {
    const f = join(diskDir(), 'file');
    writeFileSync(f, '');
    expect((await refused(f)).message).toMatch(/cannot be used: it is not a directory/);
  });

  it('refuses a directory it cannot write, found by a real write', async () => {
    // /proc refuses file creation even to root (mode bits would not tell).
    const e = await refused('/proc');
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toMatch(/^local_disk: \/proc cannot be used: cannot create a file there/);
  });

  it('takes O_DIRECT where the filesystem does and says which it uses', async () => {
    const t = await openDisk(diskDir(), { direct: true });
    expect(t.stats().direct).toBe(true);
    await t.close();
    const b = await openDisk(diskDir(), { direct: false });
    expect(b.stats().direct).toBe(false);
    await b.close();
  });

  it('a second tier over a locked directory gets KVT_DISK_LOCKED; the lock goes with close()', async () => {
    const dir = diskDir();
    const first = await openDisk(dir);
    const e = await refused(dir);
    expect(e).toBeInstanceOf(DiskLockedError);
    expect((e as DiskLockedError).code).toBe('KVT_DISK_LOCKED');
    expect(e.message).toContain(`pid ${process.pid}`);
    expect(e.message).toContain('two kvtier daemons cannot share one local_disk directory');
    await first.close();
    const again = await openDisk(dir);
    await again.close();
  });

  it('a lock held by another process refuses this one, and is free once it exits', async () => {
    const dir = diskDir();
    const child = spawn('flock', ['-x', '-F', join(dir, 'kvtier.lock'), 'sleep', '30'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 300));
      expect(await refused(dir)).toBeInstanceOf(DiskLockedError);
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
    const t = await openDisk(dir);
    await t.close();
  });
});
