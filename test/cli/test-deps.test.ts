/**
 * scripts/test-deps.mjs, which `npm test` runs first: as a user who cannot
 * install, a missing tool fails with the exact command, never a quiet skip.
 * (Installing as root is what .ci/run does on a fresh machine; not run here.)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../bench/daemon-process.js';

const script = join(packageRoot(), 'scripts/test-deps.mjs');

describe('test-deps', () => {
  it('passes silently where everything is installed', () => {
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('without valkey-server, as a non-root user: exit 1 naming it and the command to run', () => {
    const bin = mkdtempSync(join(tmpdir(), 'kvtier-deps-'));
    try {
      symlinkSync('/bin/sh', join(bin, 'sh'));
      symlinkSync('/usr/bin/apt-get', join(bin, 'apt-get'));
      const asUser = process.getuid?.() === 0 ? ['/usr/bin/setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : [];
      const argv = [...asUser, process.execPath, script];
      const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', env: { ...process.env, PATH: bin } });
      expect(r.stderr).toContain('test-deps: missing: valkey-server, valkey-cli or valkey-benchmark is not on PATH');
      expect(r.stderr).toContain('sudo bash scripts/ensure-valkey.sh');
      expect(r.status).toBe(1);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });
});
