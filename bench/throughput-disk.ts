/**
 * Disk tier throughput: chunks stored from pinned host slabs into the disk
 * tier and retrieved back into slabs (reads from a cold page cache: O_DIRECT,
 * else posix_fadvise DONTNEED), beside a plain reference in the same run: the
 * same slabs written to and read from one file at consecutive offsets with
 * the same I/O thread count and the same flags, no headers, no checksums, no
 * renames. Rounds interleave tier and reference; each ratio is the median of
 * per-round ratios, so it means something on a noisy machine.
 *
 *   node dist/bench/throughput-disk.js [--dir D] [--sizes 4,32] [--round-mib 256] [--rounds 3] [--threads 4] [--json]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { DiskIo } from '../native/disk-io.js';
import { NativePool } from '../native/index.js';
import { DiskTier } from '../src/tiers/disk-tier.js';
import type { Slab } from '../src/tiers/host-memory.js';
import { gbps, median } from './stats.js';

export interface DiskThroughputOptions {
  /** Parent directory of the bench's scratch directory (default os.tmpdir()). */
  dir?: string;
  sizes?: number[];
  roundBytes?: number;
  rounds?: number;
  threads?: number;
}

export interface DiskThroughputRow {
  chunk_bytes: number;
  chunks_per_round: number;
  store_gbps: number;
  retrieve_gbps: number;
  reference: { what: string; store_gbps: number; retrieve_gbps: number };
  ratio: { store: number; retrieve: number };
  verified: boolean;
}

export interface DiskThroughputResult {
  bench: 'throughput';
  tier: 'disk';
  dir: string;
  direct: boolean;
  cold_read: 'O_DIRECT' | 'posix_fadvise DONTNEED';
  io_threads: number;
  rounds: number;
  rows: DiskThroughputRow[];
}

const MiB = 1 << 20;

async function timed(run: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await run();
  return performance.now() - t0;
}

const r2 = (v: number): number => Math.round(v * 100) / 100;

export async function runDiskThroughput(opts: DiskThroughputOptions = {}): Promise<DiskThroughputResult> {
  const sizes = opts.sizes ?? [4 * MiB, 32 * MiB];
  const roundBytes = opts.roundBytes ?? 256 * MiB;
  const rounds = opts.rounds ?? 3;
  const threads = opts.threads ?? 4;
  const scratch = mkdtempSync(join(opts.dir ?? tmpdir(), 'kvtier-bench-disk-'));
  const rows: DiskThroughputRow[] = [];
  let direct = false;
  try {
    for (const chunkBytes of sizes) {
      const count = Math.max(threads, Math.round(roundBytes / chunkBytes));
      const bytes = count * chunkBytes;
      const pool = new NativePool(2 * bytes + 2 * MiB);
      const src: Slab[] = Array.from({ length: count }, () => pool.allocate(chunkBytes)!);
      const dst: Slab[] = Array.from({ length: count }, () => pool.allocate(chunkBytes)!);
      const noise = randomBytes(MiB);
      src.forEach((s, i) => { for (let o = 0; o < chunkBytes; o += MiB) noise.copy(s.buf, o, 0, Math.min(MiB, chunkBytes - o)); s.buf.writeUInt32LE(i, 0); });
      const tierDir = mkdtempSync(join(scratch, 'tier-'));
      const tier = await DiskTier.open({ dir: tierDir, capacityBytes: (rounds + 1) * bytes * 2, ioThreads: threads, direct: 'auto', dropCacheOnRead: true });
      direct = tier.direct;
      const io = new DiskIo(threads);
      const st: number[] = [], rt: number[] = [], sr: number[] = [], rr: number[] = [], rs: number[] = [], rv: number[] = [];
      let verified = true;
      try {
        for (let r = 0; r < rounds; r++) {
          const ns = r.toString(16).padStart(32, '0');
          const keys = src.map((_, i) => ({ namespaceId: ns, hash: (chunkBytes + i).toString(16).padStart(64, '0') }));
          const ms = await timed(() => Promise.all(keys.map((k, i) => tier.write(k, src[i].buf))));
          dst.forEach((d) => d.buf.fill(0));
          const rms = await timed(async () => {
            const got = await Promise.all(keys.map((k, i) => tier.readInto(k, dst[i].buf)));
            if (got.some((g) => !g)) verified = false;
          });
          verified &&= dst.every((d, i) => d.buf.equals(src[i].buf));
          const file = join(scratch, `reference-${chunkBytes}-${r}`);
          const wref = await timed(() => Promise.all(src.map((s, i) => io.writePlain(file, s.buf, i * chunkBytes, direct))));
          const rref = await timed(() => Promise.all(dst.map((d, i) => io.readPlain(file, d.buf, i * chunkBytes, { direct, dropCache: true }))));
          rmSync(file, { force: true });
          st.push(gbps(bytes, ms));
          rt.push(gbps(bytes, rms));
          sr.push(gbps(bytes, wref));
          rr.push(gbps(bytes, rref));
          rs.push(st[r] / sr[r]);
          rv.push(rt[r] / rr[r]);
        }
      } finally {
        io.close();
        await tier.close();
        src.forEach((s) => s.release());
        dst.forEach((d) => d.release());
        pool.close();
      }
      rows.push({
        chunk_bytes: chunkBytes,
        chunks_per_round: count,
        store_gbps: median(st),
        retrieve_gbps: median(rt),
        reference: { what: `plain ${direct ? 'O_DIRECT ' : ''}pwrite/pread of the same ${count} slabs at consecutive offsets of one file, ${threads} threads`, store_gbps: median(sr), retrieve_gbps: median(rr) },
        ratio: { store: r2(median(rs)), retrieve: r2(median(rv)) },
        verified,
      });
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return { bench: 'throughput', tier: 'disk', dir: opts.dir ?? tmpdir(), direct, cold_read: direct ? 'O_DIRECT' : 'posix_fadvise DONTNEED', io_threads: threads, rounds, rows };
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const sizes = flag(args, '--sizes')?.split(',').map((v) => Math.round(Number(v) * MiB));
  const n = (name: string): number | undefined => (flag(args, name) === undefined ? undefined : Number(flag(args, name)));
  const r = await runDiskThroughput({ dir: flag(args, '--dir'), sizes, roundBytes: n('--round-mib') === undefined ? undefined : n('--round-mib')! * MiB, rounds: n('--rounds'), threads: n('--threads') });
  console.log(JSON.stringify(r));
}
