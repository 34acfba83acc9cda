/** Temp config files for the config tests; each test gets its own dir. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function writeConfig(text: string, name = 'kvtier.yaml'): string {
  const dir = mkdtempSync(join(tmpdir(), 'kvtier-config-'));
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}
