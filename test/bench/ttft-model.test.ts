/**
 * Model mode of `kvtier bench ttft`, small: two 10 MiB chunks of the
 * Llama-3.3-70B TP8 per-rank shape through real kvtierd child processes, a
 * real valkey-server and real shm KV files. Every case has a row, every
 * chunk is loaded, the bytes that came back are the bytes stored, and the
 * output says that compute is modelled. Needs the built CLI (npm run build).
 */
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../bench/daemon-process.js';
import { runModelMode } from '../../bench/ttft-model.js';
import { prefillMs, SHAPES } from '../../bench/ttft-shapes.js';

const built = existsSync(join(packageRoot(), 'dist/src/cli/main.js'));

describe.skipIf(!built)('bench ttft model mode', () => {
  it('moves the real bytes for every case and labels compute as modelled', async () => {
    const prefill = { tokensPerS: null, mfu: 0.45, peakTflops: 989 };
    const r = await runModelMode({ models: ['llama-3.3-70b-tp8'], contexts: [512], questionTokens: 64, regionBytes: 64 << 20, hostReps: 1, prefill, inline: false }, () => {});
    expect(r.rows.map((x) => x.case)).toEqual(['recompute', 'host_hit', 'disk_hit', 'valkey_hit']);
    expect(r.rows.every((x) => x.path === 'blocks')).toBe(true);
    expect(r.compute).toMatch(/^compute modelled/);
    const chunkBytes = 80 * 2 * 128 * 2 * 256;
    expect(r.shapes['llama-3.3-70b-tp8'].chunk_bytes).toBe(chunkBytes);
    for (const row of r.rows.slice(1)) {
      expect(row).toMatchObject({ loaded_chunks: 2, failed_chunks: 0, bytes_moved: 2 * chunkBytes, cached_tokens: 512, prefill_tokens: 64, verified: true, compute: 'modelled' });
      expect(row.ttft_ms).toBeGreaterThan(Number(row.prefill_ms));
    }
    expect(r.rows[3].valkey_chunks).toBe(2);
    // Where the CPU went during the hit, per process. A 2-chunk hit is a few
    // 10 ms ticks at most: null when not one passed, and no figure means much.
    const cpu = r.rows[3].cpu as { cpus: number; busy_fraction: number; steal_fraction: number; cores: Record<string, number> } | null;
    if (cpu !== null) {
      expect(cpu.cpus).toBe(cpus().length);
      expect(Object.keys(cpu.cores).sort()).toEqual(['bench', 'daemon', 'valkey_server']);
      for (const f of [cpu.busy_fraction, cpu.steal_fraction]) expect(f >= 0 && f <= 1).toBe(true);
    }
    expect(r.rows[2]).toMatchObject({ host_chunks: 0, disk_chunks: 2, valkey_chunks: 0 }); // every chunk came from disk
    expect(r.rows[1].host_chunks).toBe(2);
    expect(r.rows[0].ttft_ms).toBeCloseTo(prefillMs(SHAPES['llama-3.3-70b-tp8'], 0, 576, prefill), 0);
    expect(r.skipped).toEqual([]);
  }, 120_000);

  it('runs a context above the native pool limit on the inline path, labelled so', async () => {
    const prefill = { tokensPerS: null, mfu: 0.45, peakTflops: 989 };
    const r = await runModelMode({ models: ['llama-3.3-70b-tp8'], contexts: [768], questionTokens: 64, regionBytes: 64 << 20, hostReps: 1, prefill, inline: true, nativePoolMax: 0 }, () => {});
    expect(r.rows.map((x) => [x.case, x.path])).toEqual([['recompute', 'inline'], ['host_hit', 'inline'], ['valkey_hit', 'inline']]);
    for (const row of r.rows.slice(1)) expect(row).toMatchObject({ loaded_chunks: 3, failed_chunks: 0, verified: true });
    expect(r.setup.inline).toMatch(/no scatter into blocks/);
  }, 120_000);

  it('skips, with the reason, a context above the block-path pool limit unless --inline', async () => {
    const prefill = { tokensPerS: null, mfu: 0.45, peakTflops: 989 };
    const r = await runModelMode({ models: ['llama-3.3-70b-tp8'], contexts: [768], questionTokens: 64, regionBytes: 64 << 20, hostReps: 1, prefill, inline: false, nativePoolMax: 0 }, () => {});
    expect(r.rows).toEqual([]);
    expect(r.skipped).toEqual([{ model: 'llama-3.3-70b-tp8', context_tokens: 768, reason: expect.stringMatching(/pool limit.*--inline/) }]);
  });

  it('models prefill: 128K tokens of Llama-3.3-70B on 8 H100s takes ~11 s at MFU 0.45', () => {
    const ms = prefillMs(SHAPES['llama-3.3-70b-tp8'], 0, 131072, { tokensPerS: null, mfu: 0.45, peakTflops: 989 });
    expect(ms).toBeGreaterThan(10_000);
    expect(ms).toBeLessThan(13_000);
    expect(prefillMs(SHAPES['llama-3.1-8b'], 0, 1000, { tokensPerS: 5000, mfu: 1, peakTflops: 1 })).toBe(200);
  });
});
