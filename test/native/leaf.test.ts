/**
 * native/ is a leaf: nothing it loads comes from src/ (src imports native,
 * so an import back was a cycle). It throws NativeCodedError with codes from
 * proto/constants.json, and src/errors.ts types them: an addon rejection is
 * an instance of the class of its code.
 */
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../bench/daemon-process.js';
import { NativeCodedError } from '../../native/errors.js';
import { BadLayoutError, ErrorCode, KvtierError, NativeError, RegionUnavailableError, isKvtierError } from '../../src/errors.js';
import { staticGraph } from '../helpers/import-graph.js';

describe('native/ imports nothing from src/', () => {
  it('the import graph of native/index.ts (types included) stays in native/ and proto/', () => {
    const graph = [...staticGraph(packageRoot(), 'native/index.ts', { runtimeOnly: false })];
    expect(graph.filter((f) => !f.startsWith('native/') && !f.startsWith('proto/'))).toEqual([]);
  });
});

describe('coded errors from native/ are typed by src/errors.ts', () => {
  it('a NativeCodedError is an instance of the class of its code, and of no other', () => {
    const e = new NativeCodedError(ErrorCode.KVT_BAD_LAYOUT, 'expected x, got y');
    expect(e).toBeInstanceOf(BadLayoutError);
    expect(e).toBeInstanceOf(KvtierError);
    expect(isKvtierError(e)).toBe(true);
    expect(e).not.toBeInstanceOf(RegionUnavailableError);
    expect(e).not.toBeInstanceOf(NativeError);
    expect(new BadLayoutError('m')).not.toBeInstanceOf(RegionUnavailableError);
    expect(new Error('plain')).not.toBeInstanceOf(KvtierError);
  });
});
