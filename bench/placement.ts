/**
 * CPU placement for `bench lookup`'s round trips. On the VMs this project
 * measures on, a Unix-socket round trip between two processes costs ~20 us
 * when both run on one CPU and ~80 us when they run on two (the wake-up of
 * the other vCPU), for a plain Node echo and for the daemon alike; the OS
 * picks either, per process, so an unpinned echo floor and an unpinned
 * daemon rtt may not be measured in the same placement. Pinning both pairs
 * the same way (taskset, util-linux) compares like with like.
 */
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';

export type Placement = 'same_cpu' | 'cross_cpu';

/** Whether processes can be pinned here: taskset runs and there are two CPUs or more. */
export function canPin(): boolean {
  if (availableParallelism() < 2) return false;
  const r = spawnSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
  return r.status === 0;
}

/** Pins every thread of `pid` to `cpus` (a taskset list: "0", "1", "0-15"). */
export function pin(pid: number, cpus: string): void {
  const r = spawnSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`taskset -a -p -c ${cpus} ${pid} failed: ${r.stderr.toString().trim()}`);
}

/**
 * Places the measuring process (`self`) against the servers (`peers`): on
 * CPU 0 with them, or on CPU 1 with them on CPU 0.
 */
export function place(placement: Placement, self: number, peers: number[]): void {
  pin(self, placement === 'same_cpu' ? '0' : '1');
  for (const p of peers) pin(p, '0');
}

/** Lets `pids` run on every CPU again. */
export function unpin(pids: number[]): void {
  const all = `0-${availableParallelism() - 1}`;
  for (const p of pids) pin(p, all);
}
