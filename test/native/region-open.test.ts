// Opening a region file: the addon maps only what the connecting client could
// open itself. Symlinks anywhere in the path, files of another uid, FIFOs,
// device nodes and '.'/'..' components are refused with KVT_FORBIDDEN, and
// nothing of them stays mapped (checked in /proc/self/maps). Tests that need
// root (chown, mknod) say so and skip when not root.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';

import { RegisteredKv, addonPath, nativeAvailable, peerCredentials, type KvLayoutSpec } from '../../native/index.js';
import { ForbiddenError, RegionUnavailableError } from '../../src/errors.js';
import { socketFd } from '../../src/protocol/peer.js';

const SIZE = 4096;
const isRoot = process.getuid?.() === 0;
const uid = process.getuid?.() ?? 0;
const cleanups: (() => void)[] = [];
afterAll(() => cleanups.reverse().forEach((f) => f()));

interface RawRegion { close(): void; readonly size: number }
const raw = nativeAvailable()
  ? (createRequire(import.meta.url)(addonPath()) as { Region: new (path: string, size: number, dir: string, uid: number) => RawRegion })
  : undefined;
if (raw === undefined) console.log('region-open.test.ts skipped: the native addon is not built (npm run build:native)');
if (raw !== undefined && !isRoot) console.log('region-open.test.ts: the chown and mknod tests are skipped: they need root');

let n = 0;
/** A fresh directory under /dev/shm, removed after the file's tests. */
function shmDir(): string {
  const d = `/dev/shm/kvtier-test-${process.pid}-dir-${n++}`;
  mkdirSync(d);
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function spec(path: string): KvLayoutSpec {
  return {
    regions: [{ regionId: 1, sizeBytes: SIZE, shmPath: path }],
    planes: [{ layer: 0, regionId: 1, offset: 0, blockStride: 1024, blockBytes: 1024 }],
    numBlocks: 4,
    blockSize: 4,
    chunkTokens: 16,
  };
}

const mapped = (path: string): boolean => readFileSync('/proc/self/maps', 'utf8').includes(path);

/** Refused with KVT_FORBIDDEN (or `code`), matching `message`, with nothing left mapped. */
function expectRefused(path: string, message: RegExp, options: { ownerUid?: number; realPath?: string } = {}): void {
  let err: unknown;
  try {
    new RegisteredKv(spec(path), { ownerUid: options.ownerUid });
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ForbiddenError);
  expect((err as ForbiddenError).code).toBe('KVT_FORBIDDEN');
  expect((err as Error).message).toMatch(message);
  expect(mapped(path)).toBe(false);
  if (options.realPath !== undefined) expect(mapped(options.realPath)).toBe(false);
}

describe.skipIf(raw === undefined)('RegisterKv opens only what the client could open itself', () => {
  test('a file in a subdirectory of /dev/shm that the client owns is mapped (the walk works)', async () => {
    const dir = shmDir();
    const sub = join(dir, 'a', 'b');
    mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, 'kv.bin'), Buffer.alloc(SIZE, 7));
    const kv = new RegisteredKv(spec(join(sub, 'kv.bin')));
    expect(mapped(join(sub, 'kv.bin'))).toBe(true);
    await kv.close();
    expect(mapped(join(sub, 'kv.bin'))).toBe(false);
  });

  test('a symlinked directory inside /dev/shm pointing outside it is refused', () => {
    const outside = mkdtempSync(join(tmpdir(), 'kvtier-secret-'));
    cleanups.push(() => rmSync(outside, { recursive: true, force: true }));
    const secret = join(outside, 'secret.bin');
    writeFileSync(secret, Buffer.alloc(SIZE, 0x42));
    const dir = shmDir();
    symlinkSync(outside, join(dir, 'link'));
    expectRefused(join(dir, 'link', 'secret.bin'), /component 'link' is not a directory \(a symlink is never followed\)/, { realPath: secret });
    // Deeper, and with the link one level down.
    mkdirSync(join(dir, 'real'));
    symlinkSync(outside, join(dir, 'real', 'deeper'));
    expectRefused(join(dir, 'real', 'deeper', 'secret.bin'), /component 'deeper'/, { realPath: secret });
    expect(readFileSync(secret).equals(Buffer.alloc(SIZE, 0x42))).toBe(true);
  });

  test('a symlinked directory pointing inside /dev/shm is refused too', () => {
    const dir = shmDir();
    mkdirSync(join(dir, 'real'));
    writeFileSync(join(dir, 'real', 'kv.bin'), Buffer.alloc(SIZE));
    symlinkSync(join(dir, 'real'), join(dir, 'alias'));
    expectRefused(join(dir, 'alias', 'kv.bin'), /component 'alias'/, { realPath: join(dir, 'real', 'kv.bin') });
  });

  test('a symlink as the file itself is refused', () => {
    const dir = shmDir();
    writeFileSync(join(dir, 'target'), Buffer.alloc(SIZE));
    symlinkSync(join(dir, 'target'), join(dir, 'kv.bin'));
    expectRefused(join(dir, 'kv.bin'), /is a symlink/, { realPath: join(dir, 'target') });
  });

  test('a file owned by another uid than the client is refused', () => {
    const dir = shmDir();
    const f = join(dir, 'kv.bin');
    writeFileSync(f, Buffer.alloc(SIZE));
    // The owner check against a peer uid that differs from the file's, as a
    // client of another uid would be seen.
    expectRefused(f, new RegExp(`owned by uid ${uid}, the connecting process runs as uid ${uid + 1}`), { ownerUid: uid + 1 });
  });

  test.skipIf(!isRoot)('a file chowned to another uid is refused for its old owner (needs root)', () => {
    const dir = shmDir();
    const f = join(dir, 'kv.bin');
    writeFileSync(f, Buffer.alloc(SIZE));
    chownSync(f, 12345, 12345);
    expectRefused(f, /owned by uid 12345, the connecting process runs as uid 0/);
  });

  test('a FIFO is refused without opening it (no hang)', () => {
    const dir = shmDir();
    const f = join(dir, 'fifo');
    const r = spawnSync('mkfifo', [f]);
    expect(r.status).toBe(0);
    expectRefused(f, /expected a regular shm file/);
  });

  test.skipIf(!isRoot)('a device node is refused without opening it (needs root)', () => {
    const dir = shmDir();
    const f = join(dir, 'null');
    // 1:3 is /dev/null: harmless even if it were opened.
    const r = spawnSync('mknod', [f, 'c', '1', '3']);
    expect(r.status, r.stderr?.toString()).toBe(0);
    expectRefused(f, /expected a regular shm file/);
  });

  test("'..', '.' and empty components are refused by the addon itself, not only by the TypeScript check", () => {
    const dir = shmDir();
    writeFileSync(join(dir, 'kv.bin'), Buffer.alloc(SIZE));
    for (const bad of [`${dir}/../${dir.slice('/dev/shm/'.length)}/kv.bin`, `${dir}/./kv.bin`, `${dir}//kv.bin`, `${dir}/kv.bin/`]) {
      let err: unknown;
      try {
        new raw!.Region(bad, SIZE, '/dev/shm', uid);
      } catch (e) {
        err = e;
      }
      expect((err as { code?: string }).code, bad).toBe('KVT_FORBIDDEN');
      expect((err as Error).message).toMatch(/without empty, '\.' or '\.\.' components/);
    }
    // '/dev/shm/../etc/passwd' through RegisteredKv is stopped earlier, with the path check's message.
    expect(() => new RegisteredKv(spec('/dev/shm/../etc/passwd'))).toThrow(/expected an absolute shm_path inside \/dev\/shm/);
    // A path outside the base given to the addon.
    expect(() => new raw!.Region('/etc/passwd', SIZE, '/dev/shm', uid)).toThrow(/expected a file inside \/dev\/shm/);
    expect(mapped('/etc/passwd')).toBe(false);
  });

  test('a missing file is still RegionUnavailable, not Forbidden', () => {
    const dir = shmDir();
    expect(() => new RegisteredKv(spec(join(dir, 'missing')))).toThrow(RegionUnavailableError);
    expect(() => new RegisteredKv(spec(join(dir, 'no-dir', 'missing')))).toThrow(RegionUnavailableError);
  });
});

describe.skipIf(raw === undefined)('peerCredentials', () => {
  test('reads the connecting process from a real Unix socket', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvtier-peer-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 's.sock');
    const seen = new Promise<ReturnType<typeof peerCredentials>>((resolve, reject) => {
      const server = createServer((s) => {
        try {
          const fd = socketFd(s);
          expect(fd).not.toBeNull();
          resolve(peerCredentials(fd!));
        } catch (e) {
          reject(e);
        } finally {
          s.destroy();
          server.close();
        }
      });
      server.listen(path, () => connect(path).on('error', () => {}));
    });
    const cred = await seen;
    expect(cred).toEqual({ pid: process.pid, uid, gid: process.getgid?.() ?? 0 });
  });

  test('a descriptor that is not a socket is a coded error', () => {
    expect(() => peerCredentials(0 + 1e6)).toThrow(/SO_PEERCRED/);
    expect(() => peerCredentials(-1)).toThrow(/expected a file descriptor/);
  });
});
