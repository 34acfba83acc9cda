/** The built `kvtier` command as a user runs it (needs `npm run build`, which `npm test` does first). */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot, spawnDaemon, type DaemonProcess } from '../../bench/daemon-process.js';
import { KvtierClient } from '../../src/protocol/client.js';

const cli = join(packageRoot(), 'dist/src/cli/main.js');

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: { ...process.env, KVTIER_CONFIG_FILE: '', LMCACHE_CONFIG_FILE: '', ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

describe('kvtier CLI (run `npm run build` first)', () => {
  let dir: string;
  let daemon: DaemonProcess;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kvtier-cli-'));
    daemon = await spawnDaemon({ KVTIER_MAX_LOCAL_CPU_SIZE: '0.25' });
  });
  afterAll(async () => {
    await daemon?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a bad config value stops start with exit code 2 naming key, value and what is allowed', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'chunk_size: 100\n');
    const r = await run(['start', '--config', file, '--socket', join(dir, 's.sock')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/chunk_size/);
    expect(r.stderr).toMatch(/100/);
    expect(r.stderr).toMatch(/multiple of 16/);
    expect(existsSync(join(dir, 's.sock'))).toBe(false);
  });

  it('an LMCache environment variable that is invalid is also exit code 2', async () => {
    const r = await run(['start', '--socket', join(dir, 'e.sock')], { LMCACHE_MAX_LOCAL_CPU_SIZE: 'lots' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/LMCACHE_MAX_LOCAL_CPU_SIZE/);
  });

  it('an unknown key is a warning naming it, and the daemon starts', async () => {
    const file = join(dir, 'unknown.yaml');
    writeFileSync(file, 'chunk_sise: 256\nmax_local_cpu_size: 0.1\n');
    const d = await spawnDaemon({ KVTIER_CONFIG_FILE: file });
    try {
      expect(d.stderr()).toMatch(/chunk_sise/);
      expect(d.stderr()).toMatch(/chunk_size/);
    } finally {
      expect(await d.stop()).toBe(0);
    }
  });

  it('stats --json prints the daemon figures; stats prints a table', async () => {
    const c = await KvtierClient.connect({ path: daemon.socket });
    await c.put(Buffer.from('k'), Buffer.alloc(1000, 1));
    await c.close();
    const j = await run(['stats', '--json', '--socket', daemon.socket]);
    expect(j.code).toBe(0);
    const s = JSON.parse(j.stdout) as { host: { entries: number }; memory: { capacityBytes: number } };
    expect(s.host.entries).toBeGreaterThanOrEqual(1);
    expect(s.memory.capacityBytes).toBe(Math.floor(0.25 * 1024 ** 3));
    const t = await run(['stats', '--socket', daemon.socket]);
    expect(t.stdout).toMatch(/host memory/);
    const none = await run(['stats', '--socket', join(dir, 'nobody.sock')]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no daemon/);
  });

  it('doctor reports the socket, the native addon and Valkey', async () => {
    const r = await run(['doctor', '--socket', daemon.socket]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/OK\s+socket/);
    expect(r.stdout).toMatch(/native addon/);
    expect(r.stdout).toMatch(/valkey\s+not configured/);
  });

  it('the config `npm start` uses starts a daemon (pool over one 2 GiB arena)', async () => {
    // Only the size is lowered from 5 GB, to spare CI memory; it still needs two arenas.
    // Serving is enough: the first 64 MiB are warm before the socket listens.
    const d = await spawnDaemon({ KVTIER_CONFIG_FILE: join(packageRoot(), 'config/example.yaml'), KVTIER_MAX_LOCAL_CPU_SIZE: '2.1' }, undefined, { warm: false });
    try {
      const c = await KvtierClient.connect({ path: d.socket });
      await c.put(Buffer.from('x'), Buffer.alloc(10, 1));
      expect((await c.get(Buffer.from('x')))!.equals(Buffer.alloc(10, 1))).toBe(true);
      await c.close();
    } finally {
      expect(await d.stop()).toBe(0);
    }
  });

  it('SIGTERM closes and unlinks the socket and exits 0', async () => {
    const d = await spawnDaemon({ KVTIER_MAX_LOCAL_CPU_SIZE: '0.1' });
    const c = await KvtierClient.connect({ path: d.socket });
    const pending = Array.from({ length: 8 }, (_, i) => c.put(Buffer.from(`p${i}`), Buffer.alloc(512 * 1024, i)));
    await Promise.all(pending);
    const path = d.socket;
    expect(existsSync(path)).toBe(true);
    expect(await d.stop('SIGTERM')).toBe(0);
    expect(existsSync(path)).toBe(false);
    expect(d.stderr()).toMatch(/shutting down/);
  });
});
