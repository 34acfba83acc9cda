/**
 * Where the machine's CPU went during a timed span, from /proc: how busy all
 * CPUs were, how much the hypervisor took (steal), and how many cores each
 * named process used. A slow run on a shared VM says here whether the
 * measured processes were short of CPU, or something else had it.
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';

const TICKS_PER_S = 100; // USER_HZ: 100 on every Linux this runs on

interface Snapshot {
  at: number;
  /** /proc/stat "cpu" line: user nice system idle iowait irq softirq steal. */
  total: number[];
  /** utime + stime ticks per name; a process that is gone counts 0. */
  procs: Record<string, number>;
}

function procTicks(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the ")" of the command name: state is field 3, utime 14, stime 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

export function cpuSnapshot(pids: Record<string, number | undefined>): Snapshot | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
    return {
      at: performance.now(),
      total: line.trim().split(/\s+/).slice(1, 9).map(Number),
      procs: Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, procTicks(pid)])),
    };
  } catch {
    return null; // not Linux
  }
}

export interface CpuUse {
  cpus: number;
  /** Of all CPUs' time in the span: not idle, not iowait (steal counts as busy: the CPU was not ours). */
  busy_fraction: number;
  /** Of all CPUs' time in the span: taken by the hypervisor. */
  steal_fraction: number;
  /** Cores each process used on average over the span. */
  cores: Record<string, number>;
  /** Cores used by everything else in this VM (busy less steal, minus the named processes). */
  other_cores: number;
}

export function cpuUse(a: Snapshot | null, b: Snapshot | null): CpuUse | null {
  if (a === null || b === null) return null;
  const d = b.total.map((v, i) => v - a.total[i]);
  const all = d.reduce((x, y) => x + y, 0);
  if (all <= 0) return null;
  const idle = d[3] + d[4];
  const seconds = (b.at - a.at) / 1000;
  if (seconds <= 0) return null;
  const round = (v: number): number => Math.round(v * 100) / 100;
  // A process that exited in the span reads 0 at its end: counted as 0, not negative.
  const cores = Object.fromEntries(Object.keys(b.procs).map((k) => [k, round(Math.max(0, b.procs[k] - (a.procs[k] ?? 0)) / TICKS_PER_S / seconds)]));
  const n = cpus().length;
  const busyCores = ((all - idle - d[7]) / all) * n;
  return {
    cpus: n,
    busy_fraction: round((all - idle) / all),
    steal_fraction: round(d[7] / all),
    cores,
    other_cores: round(Math.max(0, busyCores - Object.values(cores).reduce((x, y) => x + y, 0))),
  };
}
