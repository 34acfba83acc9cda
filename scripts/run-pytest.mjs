// Runs the Python integration tests (test/python) with Debian's interpreter.
// `npm test` calls this after vitest (scripts/test-deps.mjs has checked or
// installed what they need). Exits with pytest's status; a missing python3
// or torch is a failure naming what to install, never a quiet skip.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const python = process.env.KVTIER_PYTHON ?? '/usr/bin/python3';

const hint = 'sudo apt-get install -y python3 python3-torch python3-numpy python3-protobuf python3-pytest (or run npm test as root on Debian)';
if (!existsSync(python)) {
  console.error(`run-pytest: FAILED: ${python} not found; install with: ${hint}`);
  process.exit(1);
}
const probe = spawnSync(python, ['-c', 'import torch, numpy, google.protobuf, pytest'], { encoding: 'utf8' });
if (probe.status !== 0) {
  console.error(`run-pytest: FAILED: ${python} cannot import what the tests need (${(probe.stderr || '').trim().split('\n').pop()}); install with: ${hint}`);
  process.exit(1);
}
const args = ['-m', 'pytest', '-q', '-rs', 'test/python', ...process.argv.slice(2)];
console.log(`run-pytest: ${python} ${args.join(' ')}`);
const run = spawnSync(python, args, { cwd: root, stdio: 'inherit' });
if (run.error) {
  console.error(`run-pytest: cannot run ${python}: ${run.error.message}`);
  process.exit(1);
}
process.exit(run.status ?? 1);
