/**
 * `kvtier ls`, `inspect`, `clear`, `pin` and `unpin` (run `npm run build`
 * first: the CLI runs from dist/) against a real daemon with a real
 * valkey-server, two namespaces side by side: every command's --json and
 * text, a clear that must leave the other namespace's keys alone, pins that
 * survive an eviction storm up to pin_budget_bytes, and usage errors (exit 2).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../bench/daemon-process.js';
import { startValkey, stopAllValkey, type ValkeyServer } from '../../bench/valkey-server.js';
import { parseTokenFile } from '../../src/cli/admin.js';
import type { KvtierClient } from '../../src/protocol/client.js';
import { startTestDaemon, waitFor, type TestDaemon } from '../helpers/daemon.js';

const cli = join(packageRoot(), 'dist/src/cli/main.js');
const MiB = 1024 * 1024;
const ids = (n: number, seed: number): number[] => Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104_729) % 128_000);
const pack = (t: number[]): Buffer => Buffer.from(Uint32Array.from(t).buffer);

// Each CLI run is a node start (about a second on a loaded two-core machine): generous timeouts.
describe('kvtier admin commands', { timeout: 120_000 }, () => {
  let valkey: ValkeyServer;
  let d: TestDaemon;
  let m1: KvtierClient;
  let m2: KvtierClient;
  let ns1: string;
  let ns2: string;
  const p1 = ids(3 * 256, 1);
  const p2 = ids(2 * 256, 2);

  const run = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args, '--socket', d.socket], { env: { ...process.env, KVTIER_CONFIG_FILE: '', LMCACHE_CONFIG_FILE: '' }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
  const json = async (args: string[]): Promise<any> => {
    const r = await run([...args, '--json']);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout);
  };
  const file = (name: string, text: string): string => {
    const f = join(d.dir, name);
    writeFileSync(f, text);
    return f;
  };
  const valkeyKeys = async (): Promise<string[]> => (await valkey.cli(['--raw', 'KEYS', 'adm:*'])).split('\n').filter((k) => k !== '');

  beforeAll(async () => {
    valkey = await startValkey();
    // ~10 MiB of heap pool, 1 MiB chunks: an eviction storm is a few stores.
    d = await startTestDaemon({ remote_url: valkey.url, key_prefix: 'adm', max_local_cpu_size: 0.01, host_memory: 'heap', pin_budget_bytes: 3 * MiB + 1024 });
    m1 = await d.connect({ fingerprint: { model: 'm1' } });
    m2 = await d.connect({ fingerprint: { model: 'm2' } });
    ns1 = m1.hello.namespaceId;
    ns2 = m2.hello.namespaceId;
    await (await m1.store({ address: { tokens: pack(p1) }, chunks: [0, 1, 2].map(() => randomBytes(MiB)) })).committed;
    await (await m2.store({ address: { tokens: pack(p2) }, chunks: [Buffer.alloc(4096, 1), Buffer.alloc(4096, 2)] })).committed;
  });
  afterAll(async () => {
    await d?.stop();
    await stopAllValkey();
  });

  it('ls: namespaces with chunks and bytes per tier', async () => {
    const r = await json(['ls']);
    expect(r.valkeyListed).toBe(true);
    const one = r.namespaces.find((n: any) => n.namespaceId === ns1);
    const two = r.namespaces.find((n: any) => n.namespaceId === ns2);
    expect(one).toMatchObject({ hostChunks: 3, hostBytes: 3 * MiB, valkeyChunks: 3 });
    expect(one.valkeyBytes).toBeGreaterThan(3 * MiB); // manifests and segments, with headers
    expect(two).toMatchObject({ hostChunks: 2, hostBytes: 8192, valkeyChunks: 2 });
    expect(await json(['ls', '--namespace', ns2])).toMatchObject({ namespaces: [{ namespaceId: ns2, hostChunks: 2 }] });
    const host = await json(['ls', '--tier', 'host']);
    expect(host.valkeyListed).toBe(false);
    expect(host.namespaces.find((n: any) => n.namespaceId === ns1)).toMatchObject({ hostChunks: 3, valkeyChunks: 0 });
    const text = await run(['ls']);
    expect(text.stdout).toMatch(new RegExp(`${ns1}\\s+3\\s+3\\.0 MiB\\s+0\\s+3\\s+3\\.0 MiB`));
  });

  it('inspect: by a prompt (JSON array or whitespace-separated ids) and by chunk hash', async () => {
    const f = file('p1.json', JSON.stringify(p1));
    const r = await json(['inspect', '--tokens-file', f, '--model', 'm1']);
    expect(r.chunks).toHaveLength(3);
    r.chunks.forEach((c: any, i: number) => {
      expect(c).toMatchObject({ namespaceId: ns1, index: i, inHost: true, hostBytes: MiB, pinned: false, pins: 0, inValkey: true });
      expect(c.chunkHash).toMatch(/^[0-9a-f]{64}$/);
      expect(c.hostAgeS).toBeGreaterThanOrEqual(0);
      expect(c.hostAgeS).toBeLessThan(60);
    });
    const spaced = file('p1.txt', p1.join(' ').replace(/ (\d+7) /g, '\n$1\n'));
    expect((await json(['inspect', '--tokens-file', spaced, '--model', 'm1'])).chunks.map((c: any) => c.chunkHash)).toEqual(r.chunks.map((c: any) => c.chunkHash));
    // Another namespace hashes the same tokens differently: nothing there.
    const other = await json(['inspect', '--tokens-file', f, '--model', 'm2']);
    expect(other.chunks.every((c: any) => !c.inHost && !c.inValkey)).toBe(true);
    const byHash = await json(['inspect', r.chunks[1].chunkHash]);
    expect(byHash.chunks).toEqual([expect.objectContaining({ namespaceId: ns1, chunkHash: r.chunks[1].chunkHash, inHost: true, inValkey: true })]);
    expect((await json(['inspect', r.chunks[1].chunkHash, '--namespace', ns2])).chunks[0]).toMatchObject({ inHost: false, inValkey: false });
    const text = await run(['inspect', r.chunks[0].chunkHash]);
    expect(text.stdout).toMatch(/host 1\.0 MiB, \d+\.\d s old, not pinned \(0 pins\); disk -; valkey \d+\.\d MiB/);
    expect((await run(['inspect', 'f'.repeat(64)])).stdout).toBe('not found in any tier\n');
  });

  it('pin keeps a prefix through an eviction storm, up to pin_budget_bytes; unpin lets it go', async () => {
    const f = file('p1-pin.json', JSON.stringify(p1));
    const two = file('p1-two.json', JSON.stringify(p1.slice(0, 512)));
    expect(await json(['pin', two, '--model', 'm1'])).toMatchObject({ chunks: 2, pinnedChunks: 2, alreadyChunks: 0, missingChunks: 0, overBudgetChunks: 0, pinnedBytes: 2 * MiB, budgetBytes: 3 * MiB + 1024 });
    const again = await run(['pin', f, '--model', 'm1']);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/pinned 1 of 3 chunks \(2 already pinned, 0 in no tier, 0 over budget\); 3\.0 MiB of 3\.0 MiB budget pinned/);
    // Over budget: a fourth chunk of another prompt is refused, exit 1.
    const p3 = ids(256, 3);
    await (await m1.store({ address: { tokens: pack(p3) }, chunks: [randomBytes(MiB)] })).committed;
    const over = await run(['pin', file('p3.json', JSON.stringify(p3)), '--model', 'm1', '--json']);
    expect(over.code).toBe(1);
    expect(JSON.parse(over.stdout)).toMatchObject({ chunks: 1, pinnedChunks: 0, overBudgetChunks: 1, pinnedBytes: 3 * MiB });
    // Fill the pool several times over: the pinned prefix stays in the host tier.
    for (let seed = 10; seed < 16; seed++) await (await m2.store({ address: { tokens: pack(ids(4 * 256, seed)) }, chunks: [0, 1, 2, 3].map(() => randomBytes(MiB)) })).committed;
    expect((await m1.stats() as any).host.evictions).toBeGreaterThan(10);
    const kept = await json(['inspect', '--tokens-file', f, '--model', 'm1']);
    expect(kept.chunks.map((c: any) => [c.inHost, c.pinned])).toEqual([[true, true], [true, true], [true, true]]);
    expect((await json(['ls', '--namespace', ns1, '--tier', 'host'])).namespaces[0]).toMatchObject({ hostChunks: 3, pinnedChunks: 3 });
    expect((await m1.stats() as any).pins).toEqual({ chunks: 3, bytes: 3 * MiB, budgetBytes: 3 * MiB + 1024 });
    const l = await m1.lookup({ tokens: pack(p1) }, { noLease: true });
    expect(l).toMatchObject({ hitChunks: 3, hostChunks: 3 });

    expect(await json(['unpin', f, '--model', 'm1'])).toMatchObject({ chunks: 3, pinnedChunks: 3, pinnedBytes: 0 });
    expect((await run(['unpin', f, '--model', 'm1'])).stdout).toMatch(/unpinned 0 of 3 chunks \(3 were not pinned\)/);
    for (let seed = 20; seed < 24; seed++) await (await m2.store({ address: { tokens: pack(ids(4 * 256, seed)) }, chunks: [0, 1, 2, 3].map(() => randomBytes(MiB)) })).committed;
    expect((await json(['inspect', '--tokens-file', f, '--model', 'm1'])).chunks.every((c: any) => !c.inHost && c.inValkey)).toBe(true);
    // A prefix only in Valkey is fetched into the host tier and pinned.
    expect(await json(['pin', two, '--model', 'm1'])).toMatchObject({ pinnedChunks: 2, missingChunks: 0 });
    expect((await json(['inspect', '--tokens-file', two, '--model', 'm1'])).chunks.every((c: any) => c.inHost && c.pinned)).toBe(true);
    // No tier holds it: nothing to pin, exit 1.
    const none = await run(['pin', file('none.txt', ids(256, 99).join('\n')), '--model', 'm1']);
    expect(none.code).toBe(1);
    expect(none.stdout).toMatch(/pinned 0 of 1 chunks \(0 already pinned, 1 in no tier, 0 over budget\)/);
  });

  it("clear: one namespace, one tier at a time, never another namespace's keys", async () => {
    const before = await json(['ls']);
    const two = before.namespaces.find((n: any) => n.namespaceId === ns2);
    const keys2 = (await valkeyKeys()).filter((k) => k.includes(`{${ns2}:`));
    expect(keys2.length).toBeGreaterThan(0);

    const host = await json(['clear', '--namespace', ns1, '--tier', 'host']);
    expect(host.valkeyChunks).toBe(0);
    expect(host.hostChunks).toBe(before.namespaces.find((n: any) => n.namespaceId === ns1).hostChunks);
    let now = await json(['ls']);
    expect(now.namespaces.find((n: any) => n.namespaceId === ns1)).toMatchObject({ hostChunks: 0, pinnedChunks: 0 });
    expect(now.namespaces.find((n: any) => n.namespaceId === ns1).valkeyChunks).toBeGreaterThan(0);
    expect(now.namespaces.find((n: any) => n.namespaceId === ns2)).toEqual(two);

    const all = await run(['clear', '--namespace', ns1]);
    expect(all.code).toBe(0);
    expect(all.stdout).toMatch(new RegExp(`cleared 0 host chunks and ${4} valkey chunks of namespace ${ns1}`));
    now = await json(['ls']);
    expect(now.namespaces.find((n: any) => n.namespaceId === ns1)).toBeUndefined();
    expect(now.namespaces.find((n: any) => n.namespaceId === ns2)).toEqual(two);
    expect((await valkeyKeys()).filter((k) => k.includes(`{${ns2}:`)).sort()).toEqual(keys2.sort());
    expect((await valkeyKeys()).some((k) => k.includes(`{${ns1}:`))).toBe(false);

    // Everything, valkey only: the host copies stay.
    const vk = await json(['clear', '--tier', 'valkey']);
    expect(vk).toEqual({ hostChunks: 0, diskChunks: 0, valkeyChunks: two.valkeyChunks, valkeySkipped: false });
    expect(await valkeyKeys()).toEqual([]);
    expect((await json(['ls'])).namespaces).toEqual([{ ...two, valkeyChunks: 0, valkeyBytes: 0 }]);
    expect(await json(['clear'])).toEqual({ hostChunks: two.hostChunks, diskChunks: 0, valkeyChunks: 0, valkeySkipped: false });
    expect((await run(['ls'])).stdout).toBe('no chunks\n');
  });

  it('with Valkey down: clear says Valkey was not cleared (exit 1), ls lists the host tier, --tier valkey fails', async () => {
    await (await m1.store({ address: { tokens: pack(p1) }, chunks: [Buffer.alloc(4096, 3)] })).committed;
    await valkey.kill();
    let seed = 200;
    // A lost connection is noticed by the next request: keep asking.
    await waitFor(async () => {
      await m1.lookup({ tokens: pack(ids(256, seed++)) }, { noLease: true });
      return !d.daemon.stats().remote.available;
    }, 'valkey seen down', 15_000);
    const ls = await json(['ls']);
    expect(ls).toMatchObject({ valkeyListed: false, namespaces: [{ namespaceId: ns1, hostChunks: 1 }] });
    expect((await run(['ls'])).stdout).toContain('valkey not listed (not configured or down)');
    expect((await run(['ls', '--tier', 'valkey'])).code).toBe(1);
    const r = await run(['clear', '--namespace', ns1]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/cleared 1 host chunks and 0 valkey chunks of namespace \w+; valkey is down: its chunks were NOT cleared/);
  });

  it('usage errors exit 2', async () => {
    for (const args of [
      ['ls', '--tier', 'tape'],
      ['clear', '--tier', 'disk', '--namespace', 'a b'],
      ['clear', '--namespace', 'a*'],
      ['inspect'],
      ['inspect', 'abc', '--tokens-file', 'x'],
      ['inspect', '--tokens-file', join(d.dir, 'does-not-exist')],
      ['pin'],
      ['pin', file('bad.json', '[1, -2]')],
      ['unpin', file('words.txt', '1 2 three')],
      ['pin', file('empty.txt', ''), '--fingerprint', '{"model":'],
    ]) {
      const r = await run(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).not.toBe('');
    }
  });

  it('token files: a JSON array, or integers separated by whitespace or commas', () => {
    expect(parseTokenFile('[1, 2, 4294967295]', 'f')).toEqual(pack([1, 2, 4294967295]));
    expect(parseTokenFile(' 1\n2,3\t4 \n', 'f')).toEqual(pack([1, 2, 3, 4]));
    expect(() => parseTokenFile('[1.5]', 'f')).toThrow(/position 0/);
    expect(() => parseTokenFile('{"a":1}', 'f')).toThrow(/token ids/);
    expect(() => parseTokenFile('4294967296', 'f')).toThrow(/unsigned 32-bit/);
  });
});

describe('kvtier admin commands with the disk tier', { timeout: 120_000 }, () => {
  it('ls, inspect and clear see the disk tier; --tier disk clears only it', async () => {
    const d = await startTestDaemon({ local_disk: `file://${mkdtempSync(join(tmpdir(), 'kvtier-admin-disk-'))}/`, max_local_disk_size: 0.1 });
    try {
      const run = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => new Promise((resolve) => {
        execFile(process.execPath, [cli, ...args, '--socket', d.socket], { env: { ...process.env, KVTIER_CONFIG_FILE: '', LMCACHE_CONFIG_FILE: '' }, timeout: 30_000 }, (err, stdout, stderr) => {
          resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
        });
      });
      const json = async (args: string[]): Promise<any> => {
        const r = await run([...args, '--json']);
        expect(r.code, r.stderr).toBe(0);
        return JSON.parse(r.stdout);
      };
      const c = await d.connect({ fingerprint: { model: 'disk' } });
      const ns = c.hello.namespaceId;
      const p = ids(2 * 256, 7);
      await (await c.store({ address: { tokens: pack(p) }, chunks: [Buffer.alloc(8192, 1), Buffer.alloc(8192, 2)] })).committed;
      await d.daemon.manager.drain();
      expect((await json(['ls'])).namespaces).toEqual([expect.objectContaining({ namespaceId: ns, hostChunks: 2, hostBytes: 16384, diskChunks: 2, diskBytes: 16384 })]);
      expect((await run(['ls', '--tier', 'disk'])).stdout).toMatch(new RegExp(`${ns}\\s+0\\s+0\\.0 MiB\\s+0\\s+-\\s+-\\s+2\\s+0\\.0 MiB`));
      const f = join(d.dir, 'p.json');
      writeFileSync(f, JSON.stringify(p));
      const r = await json(['inspect', '--tokens-file', f, '--model', 'disk']);
      expect(r.chunks.map((x: any) => [x.inHost, x.inDisk, x.diskBytes, x.inValkey])).toEqual([[true, true, 8192, false], [true, true, 8192, false]]);
      expect((await json(['inspect', r.chunks[0].chunkHash])).chunks).toEqual([expect.objectContaining({ namespaceId: ns, inDisk: true })]);
      expect(await json(['clear', '--tier', 'disk'])).toEqual({ hostChunks: 0, diskChunks: 2, valkeyChunks: 0, valkeySkipped: false });
      expect((await json(['ls'])).namespaces).toEqual([expect.objectContaining({ hostChunks: 2, diskChunks: 0 })]);
      expect((await run(['clear', '--namespace', ns])).stdout).toBe(`cleared 2 host chunks and 0 valkey chunks of namespace ${ns}\n`);
      // No Valkey here: naming it alone is an error from the daemon (exit 1).
      expect((await run(['ls', '--tier', 'valkey'])).code).toBe(1);
    } finally {
      await d.stop();
    }
  });

  it('--tier disk without local_disk is refused by the daemon', async () => {
    const d = await startTestDaemon({});
    try {
      const c = await d.connect();
      await expect(c.listNamespaces({ tier: 'disk' })).rejects.toMatchObject({ code: 'KVT_BAD_REQUEST' });
      await expect(c.clear({ tier: 'tape' })).rejects.toMatchObject({ code: 'KVT_BAD_REQUEST' });
      await expect(c.clear({ namespaceId: 'a*' })).rejects.toMatchObject({ code: 'KVT_BAD_REQUEST' });
    } finally {
      await d.stop();
    }
  });
});
