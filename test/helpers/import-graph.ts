/**
 * The static import graph of the repo's TypeScript, read from the sources:
 * every relative `import ... from` / `export ... from` (and bare `import '...'`)
 * reachable from an entry file. Dynamic `import()` is not followed: it is how
 * a module defers loading. `runtimeOnly` skips `import type` / `export type`,
 * which load nothing.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

const STATIC = /^\s*(import|export)\s+(type\s+)?(?:[^'";]*?\sfrom\s+)?['"](\.{1,2}\/[^'"]+)['"]/gm;

function resolve(from: string, spec: string): string {
  const js = join(dirname(from), spec);
  for (const f of [js.replace(/\.js$/, '.ts'), js.replace(/\.mjs$/, '.mts'), js]) if (existsSync(f)) return f;
  throw new Error(`${from}: cannot resolve ${spec}`);
}

/** Repo-relative paths of every module `entry` loads statically (entry included). */
export function staticGraph(root: string, entry: string, opts: { runtimeOnly: boolean }): Set<string> {
  const seen = new Set<string>();
  const todo = [join(root, entry)];
  while (todo.length > 0) {
    const file = todo.pop()!;
    const rel = relative(root, file);
    if (seen.has(rel)) continue;
    seen.add(rel);
    if (!/\.(ts|mts|js|mjs)$/.test(file)) continue;
    for (const m of readFileSync(file, 'utf8').matchAll(STATIC)) {
      if (opts.runtimeOnly && m[2] !== undefined) continue;
      todo.push(resolve(file, m[3]));
    }
  }
  return seen;
}
