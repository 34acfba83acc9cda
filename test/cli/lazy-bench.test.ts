/**
 * `kvtier start` loads no bench code: src/cli imports bench modules only
 * inside each bench command. Regression: src/cli/bench.ts imported them at
 * the top, so starting the daemon loaded valkey-glide through
 * bench/throughput-valkey.ts and defeated the daemon's lazy loading.
 */
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../bench/daemon-process.js';
import { staticGraph } from '../helpers/import-graph.js';

const root = packageRoot();

describe('the CLI loads bench modules lazily', () => {
  it('no module under bench/ is in the static import graph of src/cli/main.ts', () => {
    const graph = staticGraph(root, 'src/cli/main.ts', { runtimeOnly: true });
    expect(graph.has('src/cli/bench.ts')).toBe(true);
    expect([...graph].filter((f) => f.startsWith('bench/'))).toEqual([]);
  });

});
