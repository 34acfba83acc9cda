/**
 * The TTFT chart: one line per (model, case), every point labelled, the
 * bench's note under the title, and (where rsvg-convert is installed) an SVG
 * that a real renderer turns into a PNG.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderTtftSvg, writeTtftPlot } from '../../bench/plot-ttft.js';
import type { TtftRow } from '../../bench/ttft-types.js';

const rows: TtftRow[] = [8192, 32768, 131072].flatMap((context_tokens, i) => [
  { model: 'm', context_tokens, case: 'recompute', ttft_ms: 300 * 4 ** i },
  { model: 'm', context_tokens, case: 'host_hit', ttft_ms: 40 * 4 ** i },
  { model: 'm', context_tokens, case: 'valkey_hit', ttft_ms: 900 * 4 ** i },
]);

function hasRsvg(): boolean {
  try {
    execFileSync('rsvg-convert', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('TTFT plot', () => {
  it('draws a line per series with labelled points and the note', () => {
    const svg = renderTtftSvg(rows, 'title <x>', 'compute modelled');
    expect(svg.match(/<path /g)?.length).toBe(3);
    expect(svg.match(/<circle /g)?.length).toBe(9);
    expect(svg).toContain('compute modelled');
    expect(svg).toContain('title &lt;x&gt;');
    for (const label of ['8K', '32K', '128K', 'm host_hit', '14.4 s', '40 ms']) expect(svg).toContain(`>${label}<`);
  });

  it('refuses to draw nothing', () => {
    expect(() => renderTtftSvg([], 't', 'n')).toThrow(/no rows/);
  });

  it.skipIf(!hasRsvg())('renders to a PNG with rsvg-convert', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvtier-plot-'));
    try {
      writeTtftPlot(join(dir, 'p.svg'), rows, 't', 'n');
      execFileSync('rsvg-convert', [join(dir, 'p.svg'), '-o', join(dir, 'p.png')]);
      expect(readFileSync(join(dir, 'p.png')).subarray(1, 4).toString()).toBe('PNG');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
