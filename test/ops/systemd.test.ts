/**
 * ops/systemd/kvtierd.service is a unit systemd accepts: `systemd-analyze
 * verify` on it (with ExecStart pointed at this checkout's CLI, since
 * /usr/local/bin/kvtier is where an install puts it, not where tests run).
 * The settings the daemon depends on are checked by name.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '../..');
const unit = readFileSync(join(root, 'ops/systemd/kvtierd.service'), 'utf8');
const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));

describe('the systemd unit', () => {
  it('keeps what the daemon needs: memlock, the socket directory, a restart policy, /dev/shm shared with workers', () => {
    expect(unit).toMatch(/^LimitMEMLOCK=infinity$/m);
    expect(unit).toMatch(/^RuntimeDirectory=kvtier$/m);
    expect(unit).toMatch(/^ExecStart=\S+ start --config \S+ --socket \/run\/kvtier\/kvtier\.sock$/m);
    expect(unit).toMatch(/^Restart=on-failure$/m);
    expect(unit).toMatch(/^NoNewPrivileges=yes$/m);
    // A private /dev has its own /dev/shm: workers' KV files would not be found.
    expect(unit).not.toMatch(/^PrivateDevices=/m);
    // V8 writes JIT code.
    expect(unit).not.toMatch(/^MemoryDenyWriteExecute=/m);
  });

  it.skipIf(analyze === undefined)('passes systemd-analyze verify', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvtier-unit-'));
    try {
      const path = join(dir, 'kvtierd.service');
      writeFileSync(path, unit.replace('/usr/local/bin/kvtier', process.execPath));
      const r = await new Promise<{ code: number; out: string }>((resolve) => {
        execFile(analyze!, ['verify', path], { timeout: 30_000 }, (err, stdout, stderr) => {
          resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, out: stdout + stderr });
        });
      });
      // Unknown or misspelt keys are only warnings to verify: fail on any line naming the unit file.
      expect(r.out.split('\n').filter((l) => l.includes(path) || l.includes('kvtierd.service'))).toEqual([]);
      expect(r.code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
