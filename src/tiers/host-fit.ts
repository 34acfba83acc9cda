/**
 * Whether the host pool the config asks for can be had, checked before the
 * pool is mapped: a pool above MemAvailable would be faulted in (and
 * mlocked) until the OOM killer or swap stops the machine, long after the
 * daemon said it was serving. Too big is a ConfigError (exit 2) naming
 * max_local_cpu_size, the bytes it needs and the limit it met; with
 * shrink_local_cpu_to_available the pool takes SHRINK_FRACTION of
 * MemAvailable instead, and the caller logs the warning this returns.
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';

/** The share of MemAvailable a shrunk pool takes, leaving room for the daemon itself. */
export const SHRINK_FRACTION = 0.9;

const GiB = 1024 ** 3;
const gib = (n: number): string => `${(n / GiB).toFixed(2)} GiB`;

/** MemAvailable from /proc/meminfo in bytes, or null where the kernel does not say. */
export function memAvailableBytes(meminfo = '/proc/meminfo'): number | null {
  try {
    const m = /^MemAvailable:\s+(\d+)\s+kB$/m.exec(readFileSync(meminfo, 'utf8'));
    return m === null ? null : Number(m[1]) * 1024;
  } catch {
    return null;
  }
}

export interface HostFit {
  bytes: number;
  /** Set when the pool was shrunk: by how much, and why. */
  warning: string | null;
}

export function fitHostCapacity(requested: number, opts: { shrink: boolean; memAvailable: number | null; sizeGb: number }): HostFit {
  const avail = opts.memAvailable;
  if (avail === null || requested <= avail) return { bytes: requested, warning: null };
  const need = `max_local_cpu_size ${opts.sizeGb} GB needs ${requested} bytes (${gib(requested)}) of host memory, but MemAvailable is ${avail} bytes (${gib(avail)})`;
  if (!opts.shrink) {
    throw new ConfigError(`${need}; lower max_local_cpu_size, or set shrink_local_cpu_to_available: true to take ${Math.round(SHRINK_FRACTION * 100)}% of what is available`);
  }
  const bytes = Math.floor((avail * SHRINK_FRACTION) / 4096) * 4096;
  if (bytes < 4096) throw new ConfigError(`${need}; too little is available to shrink to`);
  return {
    bytes,
    warning: `${need}: shrink_local_cpu_to_available took ${bytes} bytes (${gib(bytes)}, ${Math.round(SHRINK_FRACTION * 100)}% of MemAvailable), ${requested - bytes} bytes (${gib(requested - bytes)}) less than asked`,
  };
}
