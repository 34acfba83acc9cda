/** A fresh local_disk directory per test, removed afterwards, and a tier over it. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskTier, type DiskTierOptions } from '../../src/tiers/disk-tier.js';

const dirs: string[] = [];

export function diskDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'kvtier-disk-'));
  dirs.push(d);
  return d;
}

export function removeDiskDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

export function openDisk(dir: string, o: Partial<DiskTierOptions> = {}): Promise<DiskTier> {
  return DiskTier.open({ dir, capacityBytes: 256 << 20, ioThreads: 2, direct: 'auto', ...o });
}
