/**
 * `kvtier doctor` as a user runs it, against a real valkey-server: a
 * configured, reachable Valkey is OK (with the data path named), one that
 * is not listening is a FAIL and exit 1. Needs `npm run build`.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../bench/daemon-process.js';
import { freePort, startValkey, stopAllValkey } from '../../bench/valkey-server.js';

const cli = join(packageRoot(), 'dist/src/cli/main.js');
const dir = mkdtempSync(join(tmpdir(), 'kvtier-doctor-'));

function doctor(yaml: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const file = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, yaml);
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, 'doctor', '--config', file, '--socket', join(dir, 'none.sock')], { env: { ...process.env, KVTIER_CONFIG_FILE: '', LMCACHE_CONFIG_FILE: '' }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

afterAll(async () => {
  await stopAllValkey();
  rmSync(dir, { recursive: true, force: true });
});

describe('kvtier doctor with a configured Valkey', () => {
  it('reports a running valkey-server as reachable and names the data path; exit 0', async () => {
    const valkey = await startValkey();
    const r = await doctor(`remote_url: ${valkey.url}\n`);
    expect(r.stdout).toMatch(/^OK\s+valkey\s+reachable$/m);
    expect(r.stdout).toMatch(/^OK\s+valkey data path\s+(native|glide): \S/m);
    expect(r.stdout).toMatch(/^(OK|WARN)\s+pinned memory\s+64 MiB probe: .*mlock (ok|refused)/m);
    expect(r.code).toBe(0);
  }, 30_000);

  it('reports a Valkey that is not listening as a FAIL; exit 1', async () => {
    const port = await freePort();
    const r = await doctor(`remote_url: valkey://127.0.0.1:${port}\n`);
    expect(r.stdout).toMatch(/^FAIL\s+valkey\s+not reachable$/m);
    expect(r.code).toBe(1);
  }, 30_000);
});

describe('kvtier doctor with local_disk', () => {
  it('reports a usable directory as OK and a missing one as a FAIL naming local_disk', async () => {
    const disk = mkdtempSync(join(dir, 'disk-'));
    const ok = await doctor(`local_disk: "file://${disk}/"\n`);
    expect(ok.stdout).toMatch(/^OK\s+local disk\s+.*writable, (O_DIRECT|page cache).*not in use$/m);
    const bad = await doctor(`local_disk: ${join(disk, 'missing')}\n`);
    expect(bad.stdout).toMatch(/^FAIL\s+local disk\s+local_disk: .*missing cannot be used: it does not exist/m);
    expect(bad.code).toBe(1);
  }, 30_000);
});
