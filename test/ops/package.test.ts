/**
 * The npm package as a user gets it: `npm pack`, the tarball unpacked as npm
 * lays out a dependency, its locked production dependencies installed offline
 * (from the cache the repository's own install filled), the addon built by
 * its script; then the installed daemon is started and the installed
 * `kvtier doctor` run against it. Also what the tarball must and must
 * not hold, and the Python wheel without the reference engine.
 */
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '../..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function sh(cmd: string, args: string[], opts: { cwd: string; env?: Record<string, string>; timeout?: number }): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, timeout: opts.timeout ?? 120_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

describe('npm pack', () => {
  let dir: string;
  let tarball: string;
  let files: string[];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kvtier-pack-'));
    // dist/ is built by `npm test` before vitest runs; --ignore-scripts skips the prepare rebuild.
    const r = await sh(npm, ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: root });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    tarball = join(dir, out[0].filename);
    files = out[0].files.map((f) => f.path);
  }, 120_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('ships the built CLI, the native sources and their build scripts, and no tests', () => {
    for (const f of ['dist/src/cli/main.js', 'dist/src/daemon.js', 'native/CMakeLists.txt', 'native/src/addon.cc', 'native/src/constants.h',
      'scripts/build-native.mjs', 'scripts/build-constants.mjs', 'proto/constants.json', 'config/example.yaml', 'ops/grafana/kvtier.json', 'README.md']) {
      expect(files, f).toContain(f);
    }
    expect(files.filter((f) => f.startsWith('test/') || f.startsWith('node_modules/') || f.startsWith('build/') || f.endsWith('.map'))).toEqual([]);
  });

  it('unpacked with its production dependencies only, builds its addon; the installed daemon and doctor work', async () => {
    // As npm lays a dependency out, with the locked production dependencies
    // installed offline from the npm cache (tests make no outside traffic):
    // a runtime import of a devDependency, or a file missing from `files`, fails here.
    const pkg = join(dir, 'app', 'node_modules', 'kvtier');
    mkdirSync(pkg, { recursive: true });
    const untar = await sh('tar', ['-xzf', tarball, '-C', pkg, '--strip-components=1'], { cwd: dir });
    expect(untar.code, untar.stderr).toBe(0);
    copyFileSync(join(root, 'package-lock.json'), join(pkg, 'package-lock.json'));
    const inst = await sh(npm, ['ci', '--offline', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: pkg, timeout: 180_000 });
    expect(inst.code, `npm ci --offline --omit=dev in the unpacked package failed:\n${inst.stdout}${inst.stderr}`).toBe(0);
    const build = await sh(process.execPath, [join(pkg, 'scripts/build-native.mjs')], { cwd: pkg, env: { KVTIER_CPU_ONLY: '1' }, timeout: 300_000 });
    expect(build.code, build.stdout + build.stderr).toBe(0);
    expect(existsSync(join(pkg, 'build/Release/kvtier_native.node'))).toBe(true);

    const bin = join(pkg, 'dist/src/cli/main.js');
    const socket = join(dir, 'installed.sock');
    const env = { ...process.env, KVTIER_CONFIG_FILE: '', LMCACHE_CONFIG_FILE: '', KVTIER_MAX_LOCAL_CPU_SIZE: '0.0625' };
    const daemon = spawn(process.execPath, [bin, 'start', '--socket', socket], { cwd: pkg, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    daemon.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    try {
      const deadline = Date.now() + 30_000;
      while (!err.includes('kvtierd serving') && daemon.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(err).toContain('kvtierd serving');
      const doc = await sh(process.execPath, [bin, 'doctor', '--socket', socket], { cwd: pkg, env });
      expect(doc.stdout).toMatch(/^OK\s+native addon\s+loaded/m);
      expect(doc.stdout).toMatch(/^OK\s+socket\s+/m);
      expect(doc.code, doc.stdout).toBe(0);
    } finally {
      const exited = new Promise((r) => daemon.once('exit', r));
      daemon.kill('SIGTERM');
      await exited;
    }
  }, 600_000);
});

describe('the Python wheel', () => {
  it('holds the client, the vLLM connector and the SGLang backend, not the reference engine', async () => {
    const out = mkdtempSync(join(tmpdir(), 'kvtier-wheel-'));
    try {
      // setuptools' PEP 517 backend directly: no pip, no network, no build isolation.
      // build_meta rewrites sys.argv, so the directory is read first.
      const script = `import sys, zipfile, setuptools.build_meta as b; d = sys.argv[1]; w = b.build_wheel(d); print("\\n".join(zipfile.ZipFile(d + "/" + w).namelist()))`;
      const r = await sh('/usr/bin/python3', ['-c', script, out], { cwd: join(root, 'integrations/python'), timeout: 120_000 });
      expect(r.code, r.stderr).toBe(0);
      const names = r.stdout.trim().split('\n');
      for (const f of ['kvtier/client.py', 'kvtier/vllm/connector.py', 'kvtier/sglang/storage.py', 'kvtier/proto.pyi', 'kvtier/py.typed']) expect(names, f).toContain(f);
      expect(names.filter((n) => n.includes('refengine'))).toEqual([]);
    } finally {
      rmSync(out, { recursive: true, force: true });
      rmSync(join(root, 'integrations/python/build'), { recursive: true, force: true });
      rmSync(join(root, 'integrations/python/kvtier.egg-info'), { recursive: true, force: true });
    }
  }, 180_000);
});
