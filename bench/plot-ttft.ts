/**
 * TTFT against context length, one line per (model, case), as a standalone
 * SVG written by hand (no plotting dependency): log2 x axis over the context
 * lengths, log10 y axis in ms, every point labelled with its value, and the
 * bench's note (e.g. "compute modelled") under the title so the picture
 * never travels without it.
 */
import { writeFileSync } from 'node:fs';
import type { TtftRow } from './ttft-types.js';

const W = 900;
const H = 560;
const M = { left: 80, right: 250, top: 70, bottom: 60 };
const COLORS: Record<string, string> = { recompute: '#d62728', host_hit: '#2ca02c', disk_hit: '#9467bd', valkey_hit: '#1f77b4', cold: '#d62728', warm: '#2ca02c', warm_flushed: '#1f77b4' };
const DASHES = ['', '7 4', '2 3', '10 3 2 3'];

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmtTokens = (t: number): string => (t >= 1024 && t % 1024 === 0 ? `${t / 1024}K` : String(t));
const fmtMs = (ms: number): string => (ms >= 1000 ? `${(ms / 1000).toFixed(ms >= 10_000 ? 1 : 2)} s` : `${ms >= 10 ? Math.round(ms) : ms.toFixed(1)} ms`);

export function renderTtftSvg(rows: TtftRow[], title: string, note: string): string {
  const pts = rows.filter((r) => r.ttft_ms > 0 && r.context_tokens > 0);
  if (pts.length === 0) throw new Error('no rows with a positive ttft_ms to plot');
  const xs = [...new Set(pts.map((r) => r.context_tokens))].sort((a, b) => a - b);
  const lx0 = Math.log2(xs[0]) - 0.3;
  const lx1 = Math.log2(xs[xs.length - 1]) + 0.3;
  const ly0 = Math.floor(Math.log10(Math.min(...pts.map((r) => r.ttft_ms))));
  const ly1 = Math.ceil(Math.log10(Math.max(...pts.map((r) => r.ttft_ms))));
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const X = (t: number): number => M.left + ((Math.log2(t) - lx0) / (lx1 - lx0)) * pw;
  const Y = (ms: number): number => M.top + ph - ((Math.log10(ms) - ly0) / Math.max(1, ly1 - ly0)) * ph;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${M.left}" y="28" font-size="17" font-weight="bold">${esc(title)}</text>`,
    `<text x="${M.left}" y="48" fill="#555">${esc(note)}</text>`,
  ];
  for (let e = ly0; e <= ly1; e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (Math.log10(v) > ly1) continue;
      const y = Y(v);
      out.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${y}" y2="${y}" stroke="${m === 1 ? '#ccc' : '#eee'}"/>`);
      out.push(`<text x="${M.left - 6}" y="${y + 4}" text-anchor="end" fill="#333">${fmtMs(v)}</text>`);
    }
  }
  for (const t of xs) {
    out.push(`<line x1="${X(t)}" x2="${X(t)}" y1="${M.top}" y2="${M.top + ph}" stroke="#eee"/>`);
    out.push(`<text x="${X(t)}" y="${M.top + ph + 18}" text-anchor="middle">${fmtTokens(t)}</text>`);
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${M.left + pw / 2}" y="${H - 18}" text-anchor="middle">context length (tokens, log scale)</text>`);
  out.push(`<text transform="translate(20 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">time to first token (log scale)</text>`);

  const models = [...new Set(pts.map((r) => r.model))];
  const series = new Map<string, TtftRow[]>();
  for (const r of pts) {
    const k = `${r.model}\u0000${r.case}`;
    series.set(k, [...(series.get(k) ?? []), r]);
  }
  const labels: Array<{ x: number; y: number; text: string; color: string }> = [];
  let legendY = M.top + 10;
  for (const [k, rs] of series) {
    const [model, c] = k.split('\u0000');
    const color = COLORS[c] ?? '#7f7f7f';
    const dash = DASHES[models.indexOf(model) % DASHES.length];
    const sorted = [...rs].sort((a, b) => a.context_tokens - b.context_tokens);
    const path = sorted.map((r, i) => `${i === 0 ? 'M' : 'L'}${X(r.context_tokens).toFixed(1)},${Y(r.ttft_ms).toFixed(1)}`).join(' ');
    out.push(`<path d="${path}" fill="none" stroke="${color}" stroke-width="2.2" stroke-dasharray="${dash}"/>`);
    for (const r of sorted) {
      out.push(`<circle cx="${X(r.context_tokens)}" cy="${Y(r.ttft_ms)}" r="3.5" fill="${color}"/>`);
      labels.push({ x: X(r.context_tokens) + 6, y: Y(r.ttft_ms) - 6, text: r.path === 'inline' ? `${fmtMs(r.ttft_ms)} (inline)` : fmtMs(r.ttft_ms), color });
    }
    const lx = M.left + pw + 16;
    out.push(`<line x1="${lx}" x2="${lx + 28}" y1="${legendY}" y2="${legendY}" stroke="${color}" stroke-width="2.2" stroke-dasharray="${dash}"/>`);
    out.push(`<text x="${lx + 34}" y="${legendY + 4}">${esc(`${model} ${c}`)}</text>`);
    legendY += 20;
  }
  // Labels of points at one context length never overlap: pushed 12 px apart.
  labels.sort((a, b) => a.x - b.x || a.y - b.y);
  labels.forEach((l, i) => {
    const prev = labels[i - 1];
    if (prev !== undefined && prev.x === l.x && l.y - prev.y < 12) l.y = prev.y + 12;
    out.push(`<text x="${l.x}" y="${l.y}" font-size="10" fill="${l.color}">${l.text}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

export function writeTtftPlot(file: string, rows: TtftRow[], title: string, note: string): void {
  writeFileSync(file, renderTtftSvg(rows, title, note));
}
