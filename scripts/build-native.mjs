// Builds native/ (build/Release/kvtier_native.node) with cmake-js. Runs as the
// root package's `install` script and as `npm run build:native`.
//   KVTIER_CPU_ONLY=1     build without the CUDA backend even when nvcc exists
//   KVTIER_REQUIRE_CUDA=1 fail when the CUDA backend does not build (default: fall back to CPU only)
//   KVTIER_SKIP_NATIVE=1  skip the build (the daemon then runs with heap memory only)
// No downloads: cmake-js is pointed at the running Node's own headers.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const env = { ...process.env };

if (env.KVTIER_SKIP_NATIVE === '1') {
  console.log('kvtier: KVTIER_SKIP_NATIVE=1, not building the native addon');
  process.exit(0);
}

// cmake-js downloads Node headers unless npm's nodedir names a local copy.
const nodePrefix = dirname(dirname(process.execPath));
if (!env.npm_config_nodedir && existsSync(join(nodePrefix, 'include', 'node', 'node_api.h'))) {
  env.npm_config_nodedir = nodePrefix;
}

const napiInclude = dirname(createRequire(join(root, 'package.json')).resolve('node-addon-api/package.json'));
// Resolved, not joined: installed as a dependency, cmake-js is hoisted above this package.
const cmakeJs = join(dirname(createRequire(join(root, 'package.json')).resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const cpuOnly = env.KVTIER_CPU_ONLY === '1' || env.KVTIER_CPU_ONLY === 'true';
const requireCuda = env.KVTIER_REQUIRE_CUDA === '1';
if (env.CUDACXX === undefined && !cpuOnly && existsSync('/usr/local/cuda/bin/nvcc')) {
  env.CUDACXX = '/usr/local/cuda/bin/nvcc';
}

// Configure every time (so -D options apply to an existing build dir), then build.
function build(withCuda) {
  const common = [
    '--directory', join(root, 'native'),
    '--out', join(root, 'build'),
    '--config', 'Release',
    '--parallel', String(Math.min(availableParallelism(), 8)),
    `--CDKVTIER_CPU_ONLY=${withCuda ? 'OFF' : 'ON'}`,
    `--CDKVTIER_REQUIRE_CUDA=${withCuda && requireCuda ? 'ON' : 'OFF'}`,
    `--CDKVTIER_NAPI_INCLUDE=${napiInclude}`,
  ];
  for (const step of ['configure', 'build']) {
    const r = spawnSync(process.execPath, [cmakeJs, step, ...common], { cwd: root, env, stdio: 'inherit' });
    if (r.status !== 0) return r.status ?? 1;
  }
  return 0;
}

let status = build(!cpuOnly);
if (status !== 0 && !cpuOnly && !requireCuda) {
  // A broken CUDA toolchain must not break `npm install`: the CPU backend
  // is complete on its own. KVTIER_REQUIRE_CUDA=1 makes this fatal instead.
  console.warn('kvtier: the build with the CUDA backend failed (see above); building the CPU backend only');
  status = build(false);
}
if (status !== 0) {
  console.error(
    'kvtier: the native addon failed to build (see above). It needs cmake >= 3.18, a C++17 compiler and xxhash.h (Debian: libxxhash-dev); ' +
      'set KVTIER_CPU_ONLY=1 to leave CUDA out, or KVTIER_SKIP_NATIVE=1 to skip it.',
  );
  process.exit(status);
}
const out = join(root, 'build', 'Release', 'kvtier_native.node');
if (!existsSync(out)) {
  console.error(`kvtier: the build finished but ${out} is missing`);
  process.exit(1);
}
console.log(`kvtier: built ${out}`);
