import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderConfigDoc } from '../../src/config/print-docs.js';
import { configTable } from '../../src/config/load.js';

describe('docs/config.md', () => {
  it('is what src/config/print-docs.ts generates (regenerate it if this fails)', () => {
    expect(readFileSync('docs/config.md', 'utf8')).toBe(renderConfigDoc());
  });

  it('lists every key of the table', () => {
    const doc = readFileSync('docs/config.md', 'utf8');
    for (const row of configTable()) expect(doc).toContain(`| \`${row.key}\` |`);
  });
});
