/**
 * No extra memory on Valkey reads: a daemon (its own process) reads contexts
 * that only Valkey holds into a worker's registered shm KV, through a host
 * pool much smaller than what it reads in all, and its resident memory stays
 * within 64 MiB of what it held before (pool included: it is warm then).
 *
 * What is measured: the daemon's Rss from /proc/<pid>/smaps, less the Rss of
 * its mappings of the worker's KV files. Those pages are the worker's shm
 * (tmpfs), which the daemon writes into and the worker owns: they would show
 * in VmRSS (as RssShmem) at the full KV size whatever the daemon does. The
 * host pool and everything else the daemon allocates stay in the figure.
 *
 * 1 GiB in all: 2 contexts of 64 chunks of 8 MiB (512 MiB each, the whole
 * worker KV), one after another, through a 128 MiB pool: each context is four
 * times the pool, read by one Lookup and one block Retrieve, every chunk
 * loaded (no failed block) and byte-exact. The Lookup's prefetch window
 * (a quarter of the pool) starts fetches as the Retrieve scatters the landed
 * ones out. KVTIER_MEMORY_TEST_GIB=5 reads 5 GiB (10 contexts) the same way:
 * 8 GiB of RAM for Valkey, so opt-in.
 */
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeAvailable, type KvLayoutSpec } from '../../native/index.js';
import { packTokens } from '../../src/chunking/tokens.js';
import { KvtierClient } from '../../src/protocol/client.js';
import { spawnDaemon, type DaemonProcess } from '../../bench/daemon-process.js';
import { startValkey, stopAllValkey, type ValkeyServer } from '../../bench/valkey-server.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { flashAttn, type KvFixture, type Shape } from '../native/shm-fixture.js';

const MiB = 1 << 20;
const CONTEXT_GIB = Number(process.env.KVTIER_MEMORY_TEST_GIB ?? '1');
const POOL_GB = 0.125;
/** 16 planes (8 layers, K and V) x 32 KiB per block; 16 blocks a chunk: 8 MiB chunks, a 512 MiB KV. */
const shape: Shape = { layers: 8, numBlocks: 1024, blockSize: 16, heads: 8, headDim: 128, elemBytes: 2, chunkTokens: 256 };
const B = shape.chunkTokens / shape.blockSize;
/** Chunks per context (four times the pool); the worker's KV holds SLOTS contexts side by side. */
const CONTEXT_CHUNKS = 64;
const SLOTS = shape.numBlocks / (B * CONTEXT_CHUNKS);
const CONTEXTS = Math.round((CONTEXT_GIB * 1024) / (CONTEXT_CHUNKS * 8));
const fp = { model: 'fleet-memory', dtype: 'bfloat16', kvLayout: 'test' };

const u32 = (ids: number[]): Buffer => Buffer.from(Uint32Array.from(ids).buffer);
const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);
const tokensOf = (k: number): Buffer => packTokens(Array.from({ length: CONTEXT_CHUNKS * shape.chunkTokens }, (_, i) => (i * 104729 + k * 7919 + 7) % 128_000));
/** The worker's blocks for context k: slot k % SLOTS. */
const blocksOf = (k: number): number[] => range((k % SLOTS) * CONTEXT_CHUNKS * B, CONTEXT_CHUNKS * B);

function register(c: KvtierClient, spec: KvLayoutSpec) {
  return c.registerKv({
    regions: spec.regions.map((r) => ({ regionId: r.regionId, sizeBytes: r.sizeBytes, shmPath: r.shmPath })),
    planes: spec.planes,
    numBlocks: spec.numBlocks,
    blockSize: spec.blockSize,
  });
}

/** Resident bytes of `pid`, less its mappings of `exclude` (the worker's KV files). */
function rssExcluding(pid: number, exclude: Set<string>): number {
  let total = 0;
  let skip = false;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    // A mapping's header: "start-end perms offset dev inode [path]".
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) {
      const path = line.trim().split(/\s+/)[5] ?? '';
      skip = exclude.has(path);
    } else if (line.startsWith('Rss:') && !skip) {
      total += Number(line.split(/\s+/)[1]) * 1024;
    }
  }
  return total;
}

/** Calls `f` on every (fd, offset, length) of blocks `ids` of every plane. */
function eachBlock(fx: KvFixture, ids: number[], flags: string, f: (fd: number, at: number, len: number) => void): void {
  const fds = fx.files.map((file) => openSync(file, flags));
  try {
    fx.spec.planes.forEach((_, p) => {
      for (const b of ids) {
        const [r, at, len] = fx.where(p, b);
        f(fds[r], at, len);
      }
    });
  } finally {
    fds.forEach((fd) => closeSync(fd));
  }
}

/** The bytes of blocks `ids`, plane by plane. */
function blockBytes(fx: KvFixture, ids: number[]): Buffer {
  const parts: Buffer[] = [];
  eachBlock(fx, ids, 'r', (fd, at, len) => {
    const b = Buffer.allocUnsafe(len);
    readSync(fd, b, 0, len, at);
    parts.push(b);
  });
  return Buffer.concat(parts);
}

/** Zeroes blocks `ids` in place (no truncation: the daemon has the files mapped). */
function scribble(fx: KvFixture, ids: number[]): void {
  const zeros = Buffer.alloc(64 << 10);
  eachBlock(fx, ids, 'r+', (fd, at, len) => {
    for (let done = 0; done < len; done += zeros.length) writeSync(fd, zeros, 0, Math.min(zeros.length, len - done), at + done);
  });
}

describe.skipIf(!nativeAvailable())(`${CONTEXT_GIB} GiB of contexts read from Valkey into a worker's KV`, () => {
  let valkey: ValkeyServer;
  let writer: TestDaemon;
  let reader: DaemonProcess;
  beforeAll(async () => {
    // A 1 MiB segment takes a 1.25 MiB allocation in the server (jemalloc size classes).
    valkey = await startValkey({ maxmemory: `${CONTEXT_GIB * 1536 + 512}mb`, maxmemoryPolicy: 'noeviction' });
    // The writer stores one context at a time and waits until Valkey has it.
    writer = await startTestDaemon({ remote_url: valkey.url, max_local_cpu_size: 0.5 });
    reader = await spawnDaemon({ KVTIER_REMOTE_URL: valkey.url, KVTIER_MAX_LOCAL_CPU_SIZE: String(POOL_GB) });
  }, 60_000);
  afterAll(async () => {
    await reader?.stop();
    await writer?.stop();
    await stopAllValkey();
  });

  it(`the reader's memory (less the worker's KV mappings) grows by under 64 MiB over a ${POOL_GB * 1024} MiB pool`, async () => {
    const src = flashAttn(shape);
    const dst = flashAttn(shape);
    try {
      // The contexts into Valkey, from the source blocks of their slots.
      const w = await writer.connect({ fingerprint: fp });
      await register(w, src.spec);
      for (let k = 0; k < CONTEXTS; k++) {
        const s = await w.store({ address: { tokens: tokensOf(k) }, blockIds: u32(blocksOf(k)) }, 60_000);
        expect(s.copied.storedChunks).toBe(CONTEXT_CHUNKS);
        expect((await s.committed).committedChunks).toBe(CONTEXT_CHUNKS);
      }
      const expected = Array.from({ length: SLOTS }, (_, slot) => blockBytes(src, blocksOf(slot)));

      const pid = reader.child.pid!;
      const kvFiles = new Set(dst.files);
      const r = await KvtierClient.connect({ path: reader.socket, timeoutMs: 60_000, fingerprint: fp });
      try {
        await register(r, dst.spec);
        const baseline = rssExcluding(pid, kvFiles);
        let peak = baseline;
        const sampler = setInterval(() => {
          peak = Math.max(peak, rssExcluding(pid, kvFiles));
        }, 50);
        let loaded = 0;
        try {
          for (let k = 0; k < CONTEXTS; k++) {
            const ids = blocksOf(k);
            scribble(dst, ids);
            const l = await r.lookup({ tokens: tokensOf(k) });
            expect({ hit: l.hitChunks, valkey: l.valkeyChunks }).toEqual({ hit: CONTEXT_CHUNKS, valkey: CONTEXT_CHUNKS });
            const done = await r.retrieve({ leaseId: l.leaseId, blockIds: u32(ids) });
            await r.releaseLease(l.leaseId);
            expect({ context: k, loaded: done.loadedChunks, failed: done.failedChunks }).toEqual({ context: k, loaded: CONTEXT_CHUNKS, failed: 0 });
            loaded += done.loadedChunks;
            peak = Math.max(peak, rssExcluding(pid, kvFiles));
            // The worker's blocks hold the source's bytes again.
            expect(blockBytes(dst, ids).equals(expected[k % SLOTS]), `context ${k}`).toBe(true);
          }
        } finally {
          clearInterval(sampler);
        }
        expect(loaded).toBe(CONTEXTS * CONTEXT_CHUNKS);
        console.log(JSON.stringify({ context_gib: CONTEXT_GIB, pool_mib: POOL_GB * 1024, baseline_mib: Math.round(baseline / MiB), peak_mib: Math.round(peak / MiB), growth_mib: Math.round((peak - baseline) / MiB) }));
        expect(peak - baseline).toBeLessThan(64 * MiB);
      } finally {
        r.close();
      }
    } finally {
      src.cleanup();
      dst.cleanup();
    }
  }, 60_000 + CONTEXT_GIB * 60_000);
});
