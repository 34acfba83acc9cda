/**
 * A really full filesystem (ENOSPC, not just max_local_disk_size): a small
 * tmpfs, when this process may mount one (root with CAP_SYS_ADMIN; skipped
 * otherwise). Stores that do not fit are skipped and counted, no temporary
 * file is left behind, and what was stored before is still served.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { randomChunkKey } from './tier-contract.js';
import { diskDir, openDisk, removeDiskDirs } from './disk-helpers.js';

const mountPoint = join(diskDir(), 'small');
mkdirSync(mountPoint);
let mounted = false;
try {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mountPoint], { stdio: 'ignore' });
  mounted = true;
} catch {
  mounted = false;
}

afterAll(() => {
  if (mounted) execFileSync('umount', [mountPoint]);
  rmdirSync(mountPoint);
  removeDiskDirs();
});

describe.skipIf(!mounted)('disk tier on a 2 MiB tmpfs', () => {
  it('skips and counts stores that meet ENOSPC, leaves no temp file, keeps serving', async () => {
    const t = await openDisk(mountPoint, { capacityBytes: 64 << 20 });
    const ns = 'd'.repeat(32);
    const first = randomChunkKey(ns);
    const bytes = randomBytes(512 << 10);
    expect(await t.put(first, bytes)).toBe(true);
    const results: boolean[] = [];
    for (let i = 0; i < 6; i++) results.push(await t.put(randomChunkKey(ns), randomBytes(512 << 10)));
    expect(results).toContain(false);
    const s = t.stats();
    expect(s.skippedFull).toBe(results.filter((r) => !r).length);
    expect(s.ioErrors).toBe(0);
    expect((await t.get(first))?.equals(bytes)).toBe(true);
    await t.close();
    const temps = readdirSync(mountPoint, { recursive: true }).filter((f) => String(f).endsWith('.tmp'));
    expect(temps).toEqual([]);
  });
});
