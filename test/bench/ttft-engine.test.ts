/**
 * Engine mode of `kvtier bench ttft`: a stand-in script run by the same
 * /usr/bin/python3 takes the place of bench/ttft_engine.py (written by
 * another engineer); its rows are merged, its args passed through, and a
 * missing script is a clear KVT_NOT_FOUND error.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseEngineOutput, runEngineMode } from '../../bench/ttft-engine.js';

const dir = mkdtempSync(join(tmpdir(), 'kvtier-engine-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('bench ttft engine mode', () => {
  it('runs the script with --json and the passthrough args, and merges its JSON-line rows', async () => {
    const script = join(dir, 'engine.py');
    writeFileSync(script, [
      'import json, sys',
      'args = sys.argv[1:]',
      'assert args[0] == "--json", args',
      'sys.stderr.write("engine: warming up\\n")',
      'for c, ms in (("recompute", 900.0), ("host_hit", 120.5)):',
      '    print(json.dumps({"context_tokens": 8192, "case": c, "ttft_ms": ms, "model": "tiny", "args": args[1:]}))',
    ].join('\n'));
    const r = await runEngineMode(['--contexts', '8K'], () => {}, script);
    expect(r.rows.map((x) => [x.case, x.ttft_ms])).toEqual([['recompute', 900], ['host_hit', 120.5]]);
    expect(r.rows[0].args).toEqual(['--contexts', '8K']);
  });

  it('accepts one object with rows and keeps its other fields', () => {
    const p = parseEngineOutput('{"bench":"ttft","device":"cpu","rows":[{"context_tokens":1,"case":"recompute","ttft_ms":2}]}\n');
    expect(p.rows.length).toBe(1);
    expect(p.extra).toEqual([{ bench: 'ttft', device: 'cpu' }]);
  });

  it('fails clearly when the engine script is absent', async () => {
    await expect(runEngineMode([], () => {}, join(dir, 'absent.py'))).rejects.toMatchObject({ code: 'KVT_NOT_FOUND', message: expect.stringMatching(/absent\.py .*not in this checkout/) });
  });

  it('fails when the script exits non-zero', async () => {
    const script = join(dir, 'bad.py');
    writeFileSync(script, 'import sys\nsys.exit(3)\n');
    await expect(runEngineMode([], () => {}, script)).rejects.toThrow(/exited with 3/);
  });
});
