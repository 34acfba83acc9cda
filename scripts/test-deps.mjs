// `npm test` runs this first: every suite needs valkey-server (vitest) and
// Debian's python3 with torch, numpy, protobuf, pytest and prometheus_client
// (test/python; vLLM hands its Prometheus metric classes to build_prom_metrics).
// Nothing missing: silent, exit 0. Missing, as root on Debian: installs each
// (apt, and scripts/ensure-valkey.sh for Valkey), one line each saying so.
// Missing otherwise: exit 1 with the exact command to run; nothing is
// skipped quietly. KVTIER_PYTHON names another interpreter (then nothing is
// installed for it: it is not Debian's).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const python = process.env.KVTIER_PYTHON ?? '/usr/bin/python3';
const ownPython = process.env.KVTIER_PYTHON !== undefined;

const onPath = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const imports = (mod) => existsSync(python) && spawnSync(python, ['-c', `import ${mod}`], { stdio: 'ignore' }).status === 0;

/** [what is missing, Debian package or null for Valkey] */
function missing() {
  const out = [];
  if (!['valkey-server', 'valkey-cli', 'valkey-benchmark'].every(onPath)) out.push(['valkey-server, valkey-cli or valkey-benchmark is not on PATH', null]);
  if (!existsSync(python)) out.push([`${python} not found`, 'python3']);
  for (const [mod, pkg] of [['torch', 'python3-torch'], ['numpy', 'python3-numpy'], ['google.protobuf', 'python3-protobuf'], ['pytest', 'python3-pytest'], ['setuptools', 'python3-setuptools'], ['prometheus_client', 'python3-prometheus-client']]) {
    if (!imports(mod)) out.push([`${mod} is not importable by ${python}`, pkg]);
  }
  return out;
}

const need = missing();
if (need.length === 0) process.exit(0);

const pkgs = need.map(([, p]) => p).filter((p) => p !== null);
const valkey = need.some(([, p]) => p === null);
const isRoot = process.getuid?.() === 0;
const debian = existsSync('/etc/debian_version') && onPath('apt-get');
if (!isRoot || !debian || (ownPython && pkgs.length > 0)) {
  for (const [why] of need) console.error(`test-deps: missing: ${why}`);
  const cmds = [];
  if (pkgs.length > 0) cmds.push(`sudo apt-get install -y ${pkgs.join(' ')}`);
  if (valkey) cmds.push('sudo bash scripts/ensure-valkey.sh');
  const why = !debian ? 'this is not a Debian machine with apt-get; on Debian run' : ownPython && pkgs.length > 0 ? `KVTIER_PYTHON=${python} is not Debian's python3: install the modules for it, or on Debian's run` : 'run';
  console.error(`test-deps: npm test runs every suite and needs these; ${why}: ${cmds.join(' && ')}`);
  process.exit(1);
}

const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (r.status !== 0) {
    console.error(`test-deps: ${cmd} ${args.join(' ')} failed (exit ${r.status ?? r.signal})`);
    process.exit(1);
  }
};
if (pkgs.length > 0) {
  console.log('test-deps: apt-get update');
  run('apt-get', ['update', '-qq']);
  for (const [why, pkg] of need) {
    if (pkg === null) continue;
    console.log(`test-deps: installing ${pkg} (${why})`);
    run('apt-get', ['install', '-y', '-qq', pkg]);
  }
}
if (valkey) {
  console.log('test-deps: installing valkey-server and valkey-tools with scripts/ensure-valkey.sh (valkey-server, valkey-cli or valkey-benchmark missing)');
  run('bash', ['scripts/ensure-valkey.sh']);
}
const still = missing();
if (still.length > 0) {
  for (const [why] of still) console.error(`test-deps: still missing after installing: ${why}`);
  process.exit(1);
}
