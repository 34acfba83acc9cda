// Builds native/ (build/Release/kvtier_native.node) with cmake-js. Runs as the
// root package's `install` script and as `npm run build:native`.
//   KVTIER_CPU_ONLY=1     build without the CUDA backend even when nvcc exists
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
const cmakeJs = join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
const cpuOnly = env.KVTIER_CPU_ONLY === '1' || env.KVTIER_CPU_ONLY === 'true';
// configure every time (so -D options apply to an existing build dir), then build.
const common = [
  '--directory', join(root, 'native'),
  '--out', join(root, 'build'),
  '--config', 'Release',
  '--parallel', String(Math.min(availableParallelism(), 8)),
  `--CDKVTIER_CPU_ONLY=${cpuOnly ? 'ON' : 'OFF'}`,
  `--CDKVTIER_NAPI_INCLUDE=${napiInclude}`,
];
if (env.CUDACXX === undefined && !cpuOnly && existsSync('/usr/local/cuda/bin/nvcc')) {
  env.CUDACXX = '/usr/local/cuda/bin/nvcc';
}

let result = spawnSync(process.execPath, [cmakeJs, 'configure', ...common], { cwd: root, env, stdio: 'inherit' });
if (result.status === 0) {
  result = spawnSync(process.execPath, [cmakeJs, 'build', ...common], { cwd: root, env, stdio: 'inherit' });
}
if (result.status !== 0) {
  console.error(
    'kvtier: the native addon failed to build (see above). It needs cmake >= 3.18 and a C++17 compiler; ' +
      'set KVTIER_CPU_ONLY=1 to leave CUDA out, or KVTIER_SKIP_NATIVE=1 to skip it.',
  );
  process.exit(result.status ?? 1);
}
const out = join(root, 'build', 'Release', 'kvtier_native.node');
if (!existsSync(out)) {
  console.error(`kvtier: the build finished but ${out} is missing`);
  process.exit(1);
}
console.log(`kvtier: built ${out}`);
