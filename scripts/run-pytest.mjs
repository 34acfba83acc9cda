// Runs the Python integration tests (test/python) with Debian's interpreter.
// `npm test` calls this after vitest. Exits with pytest's status; skips (exit 0,
// with a message saying why) only when /usr/bin/python3 or its torch is missing.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const python = process.env.KVTIER_PYTHON ?? '/usr/bin/python3';

if (!existsSync(python)) {
  console.log(`run-pytest: SKIPPED Python tests: ${python} not found (install python3, python3-torch, python3-pytest, python3-protobuf)`);
  process.exit(0);
}
const probe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' });
if (probe.status !== 0) {
  console.log(`run-pytest: SKIPPED Python tests: torch is not importable by ${python} (${(probe.stderr || '').trim().split('\n').pop()})`);
  process.exit(0);
}
const args = ['-m', 'pytest', '-q', '-rs', 'test/python', ...process.argv.slice(2)];
console.log(`run-pytest: ${python} ${args.join(' ')}`);
const run = spawnSync(python, args, { cwd: root, stdio: 'inherit' });
if (run.error) {
  console.error(`run-pytest: cannot run ${python}: ${run.error.message}`);
  process.exit(1);
}
process.exit(run.status ?? 1);
