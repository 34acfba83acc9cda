import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { lstatSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packTokens } from '../../src/chunking/tokens.js';
import { KvtierClient } from '../../src/protocol/client.js';
import { startTestDaemon, waitFor, type TestDaemon } from '../helpers/daemon.js';

const tokens = (n: number, seed = 1): Buffer => packTokens(Array.from({ length: n }, (_, i) => (i * 2654435761 + seed) >>> 0));
const payload = (i: number, n = 4096): Buffer => Buffer.alloc(n, i + 1);

describe('daemon over a real Unix socket', () => {
  let d: TestDaemon;
  beforeAll(async () => {
    d = await startTestDaemon();
  });
  afterAll(async () => {
    await d.stop();
  });

  it('creates the socket with mode 0600', () => {
    expect(statSync(d.socket).mode & 0o777).toBe(0o600);
  });

  it('answers Hello with the namespace id and the daemon limits', async () => {
    const c = await d.connect({ fingerprint: { model: 'm', dtype: 'bfloat16' } });
    expect(c.hello!.namespaceId).toMatch(/^[0-9a-f]{32}$/);
    expect(c.hello!.chunkSize).toBe(256);
    await c.ping();
  });

  it('stores inline chunks, finds the longest prefix and retrieves the bytes exactly', async () => {
    const c = await d.connect({ fingerprint: { model: 'store-test' } });
    const t = tokens(1000);
    const chunks = [0, 1, 2].map((i) => payload(i, 10_000 + i));
    const s = await c.store({ address: { tokens: t }, chunks });
    expect(s.copied.storedChunks).toBe(3);
    expect((await s.committed).committedChunks).toBe(3);

    const l = await c.lookup({ tokens: t });
    expect(l.hitTokens).toBe(768);
    expect(l.hitChunks).toBe(3);
    expect(l.hostChunks).toBe(3);
    const r = await c.retrieve({ leaseId: l.leaseId });
    expect(r.loadedChunks).toBe(3);
    r.chunks.forEach((got, i) => expect(Buffer.from(got).equals(chunks[i])).toBe(true));

    // A prompt sharing only the first 600 tokens matches 2 chunks.
    const other = Buffer.concat([t.subarray(0, 600 * 4), tokens(400, 99)]);
    expect((await c.lookup({ tokens: other }, { noLease: true })).hitTokens).toBe(512);
    await c.releaseLease(l.leaseId);
  });

  it('stores again: chunks already present are reported, not copied twice', async () => {
    const c = await d.connect({ fingerprint: { model: 'present-test' } });
    const t = tokens(512, 5);
    await (await c.store({ address: { tokens: t }, chunks: [payload(1), payload(2)] })).committed;
    const again = await c.store({ address: { tokens: t }, chunks: [payload(1), payload(2)] });
    expect(again.copied.presentChunks).toBe(2);
    expect(again.copied.storedChunks).toBe(0);
  });

  it('keeps namespaces apart: another model, tp rank or cache_salt never hits', async () => {
    const t = tokens(512, 7);
    const a = await d.connect({ fingerprint: { model: 'ns', tpRank: 0, cacheSalt: 'tenant-a' } });
    await (await a.store({ address: { tokens: t }, chunks: [payload(1), payload(2)] })).committed;
    expect((await a.lookup({ tokens: t }, { noLease: true })).hitChunks).toBe(2);
    for (const fp of [{ model: 'ns', tpRank: 0, cacheSalt: 'tenant-b' }, { model: 'ns', tpRank: 1, cacheSalt: 'tenant-a' }, { model: 'ns2', tpRank: 0, cacheSalt: 'tenant-a' }]) {
      const b = await d.connect({ fingerprint: fp });
      expect((await b.lookup({ tokens: t }, { noLease: true })).hitChunks).toBe(0);
    }
  });

  it('a per-request seed (cache_salt, LoRA, images) keys the chunks: the same seed hits, another one or none misses', async () => {
    const c = await d.connect({ fingerprint: { model: 'seed-test' } });
    expect(c.hello!.addressSeed).toBe(true);
    const t = tokens(512, 8);
    const seed = Buffer.from('tenant-a');
    await (await c.store({ address: { tokens: t, seed }, chunks: [payload(1), payload(2)] })).committed;
    // Tokens only, no keys: the client's zero-copy Lookup frame, which must carry the seed.
    expect((await c.lookup({ tokens: t, seed }, { noLease: true })).hitChunks).toBe(2);
    expect((await c.lookup({ tokens: t, seed: Buffer.from('tenant-b') }, { noLease: true })).hitChunks).toBe(0);
    expect((await c.lookup({ tokens: t }, { noLease: true })).hitChunks).toBe(0);
  });

  it('put/get/exists by opaque key', async () => {
    const c = await d.connect({ fingerprint: { model: 'kv' } });
    const k = (i: number): Buffer => Buffer.from(`page-${i}`);
    await c.put(k(1), Buffer.from('one'));
    await c.put(k(2), Buffer.alloc(300_000, 2));
    expect((await c.get(k(1)))!.toString()).toBe('one');
    expect((await c.get(k(2)))!.equals(Buffer.alloc(300_000, 2))).toBe(true);
    expect(await c.get(k(3))).toBeNull();
    const e = await c.exists([k(1), k(2), k(3), k(1)]);
    expect(e.prefixFound).toBe(2);
    expect(e.found).toEqual([true, true, false, true]);
  });

  it('answers Put with PutOk when asked, Ack otherwise (older clients)', async () => {
    const c = await d.connect({ fingerprint: { model: 'kv-put-ok' } });
    const asked = await c.request({ put: { key: Buffer.from('p1'), value: Buffer.from('v'), wantPutOk: true } });
    expect(asked.body).toBe('putOk');
    expect(asked.putOk!.stored).toBe(true);
    const old = await c.request({ put: { key: Buffer.from('p2'), value: Buffer.from('v') } });
    expect(old.body).toBe('ack');
  });

  it('names its errors: no Hello, unknown lease, chunk size mismatch, bad tokens', async () => {
    const raw = await d.connect();
    await expect(raw.lookup({ tokens: Buffer.alloc(5) })).rejects.toMatchObject({ code: 'KVT_BAD_REQUEST' });
    await expect(raw.retrieve({ leaseId: 424242 })).rejects.toMatchObject({ code: 'KVT_LEASE_NOT_FOUND' });
    await expect(KvtierClient.connect({ path: d.socket, fingerprint: { chunkSize: 128 } })).rejects.toMatchObject({ code: 'KVT_NAMESPACE_MISMATCH' });
    await expect(raw.request({ hello: { protocolVersion: 1 } })).rejects.toMatchObject({ code: 'KVT_BAD_REQUEST' });
    await expect(raw.registerKv({ regions: [], planes: [], numBlocks: 0, blockSize: 16 })).rejects.toMatchObject({ code: expect.stringMatching(/KVT_BAD_LAYOUT|KVT_NATIVE/) });
  });

  it('counts bypassed requests by reason; a bad reason is KVT_BAD_REQUEST, and reasons are bounded', async () => {
    const c = await d.connect({ fingerprint: { model: 'bypass-test' } });
    await c.request({ bypass: { reason: 'prompt_embeds' } });
    await c.request({ bypass: { reason: 'prompt_embeds' } });
    await c.request({ bypass: { reason: 'lora_unnamed' } });
    for (const bad of ['', 'Has Space', 'x'.repeat(49), 'a:b']) {
      await expect(c.request({ bypass: { reason: bad } })).rejects.toMatchObject({ code: 'KVT_BAD_REQUEST' });
    }
    for (let i = 0; i < 40; i++) await c.request({ bypass: { reason: `r${i}` } });
    const b = d.daemon.stats().bypassed;
    expect(b.prompt_embeds).toBe(2);
    expect(b.lora_unnamed).toBe(1);
    // 32 reasons kept, the rest counted together; nothing a client sends grows it further.
    expect(Object.keys(b).length).toBe(33);
    expect(b.other).toBe(40 - 30);
    await c.ping();
  });

  it('requires Hello before anything else', async () => {
    const sock = connect(d.socket);
    await new Promise((r) => sock.once('connect', r));
    const { encodeFrame, decodeEnvelope } = await import('../../src/protocol/messages.js');
    sock.write(encodeFrame({ id: 7, lookup: { address: { tokens: tokens(256) } } }));
    const reply = await new Promise<Buffer>((r) => sock.once('data', r));
    const env = decodeEnvelope(reply.subarray(4));
    expect(env.id).toBe(7);
    expect(env.error!.code).toBe('KVT_NOT_HELLO');
    sock.destroy();
  });

  it('releases the leases and pins of a client killed mid-request', async () => {
    const c = await KvtierClient.connect({ path: d.socket, fingerprint: { model: 'killed' } });
    const t = tokens(1024, 11);
    await (await c.store({ address: { tokens: t }, chunks: [0, 1, 2, 3].map((i) => payload(i)) })).committed;
    const before = d.daemon.stats().host.pinnedEntries;
    await c.lookup({ tokens: t });
    await c.lookup({ tokens: t });
    expect(d.daemon.stats().host.pinnedEntries).toBe(before + 4);
    // A request in flight when the client dies.
    void c.lookup({ tokens: t }).catch(() => {});
    c.destroy();
    await waitFor(() => d.daemon.stats().host.pinnedEntries === before && d.daemon.stats().leases === 0, 'pins released');
  });

  it('a lease may be used from another connection of the same namespace, not another namespace', async () => {
    const sched = await d.connect({ fingerprint: { model: 'share' } });
    const worker = await d.connect({ fingerprint: { model: 'share' } });
    const stranger = await d.connect({ fingerprint: { model: 'other' } });
    const t = tokens(256, 21);
    await (await sched.store({ address: { tokens: t }, chunks: [payload(5)] })).committed;
    const l = await sched.lookup({ tokens: t });
    await expect(stranger.retrieve({ leaseId: l.leaseId })).rejects.toMatchObject({ code: 'KVT_LEASE_NOT_FOUND' });
    const r = await worker.retrieve({ leaseId: l.leaseId });
    expect(Buffer.from(r.chunks[0]).equals(payload(5))).toBe(true);
    await worker.releaseLease(l.leaseId);
    await expect(sched.releaseLease(l.leaseId)).rejects.toMatchObject({ code: 'KVT_LEASE_NOT_FOUND' });
  });

  it('expires leases after their ttl', async () => {
    const c = await d.connect({ fingerprint: { model: 'ttl' } });
    const t = tokens(256, 31);
    await (await c.store({ address: { tokens: t }, chunks: [payload(1)] })).committed;
    const l = await c.lookup({ tokens: t }, { leaseTtlMs: 50 });
    await new Promise((r) => setTimeout(r, 80));
    await expect(c.retrieve({ leaseId: l.leaseId })).rejects.toMatchObject({ code: 'KVT_LEASE_NOT_FOUND' });
  });

  it('invalidates chunks by address and a whole namespace', async () => {
    const c = await d.connect({ fingerprint: { model: 'inval' } });
    const t = tokens(768, 41);
    await (await c.store({ address: { tokens: t }, chunks: [1, 2, 3].map((i) => payload(i)) })).committed;
    expect(await c.invalidate({ tokens: t.subarray(0, 512 * 4) })).toBe(2);
    expect((await c.lookup({ tokens: t }, { noLease: true })).hitChunks).toBe(0);
    expect(await c.invalidate(null)).toBe(1);
  });
});

describe('socket file ownership', () => {
  it('replaces a stale socket file and refuses to steal a live one', async () => {
    const first = await startTestDaemon();
    try {
      await expect(startTestDaemon({}, { socket: first.socket })).rejects.toMatchObject({ code: 'KVT_SOCKET_IN_USE' });
      const c = await first.connect();
      await c.ping();
    } finally {
      await first.stop();
    }
    // A socket file with nobody behind it, as a daemon killed with SIGKILL leaves.
    const dir = mkdtempSync(join(tmpdir(), 'kvtier-stale-'));
    const path = join(dir, 'dead.sock');
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((r) => child.stdout!.once('data', r));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    expect(lstatSync(path).isSocket()).toBe(true);
    const second = await startTestDaemon({}, { socket: path });
    try {
      await (await second.connect()).ping();
    } finally {
      await second.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('honours socket_mode', async () => {
    const d = await startTestDaemon({ socket_mode: '0660' });
    try {
      expect(statSync(d.socket).mode & 0o777).toBe(0o660);
    } finally {
      await d.stop();
    }
  });

  it('refuses a path that is a regular file', async () => {
    const d = await startTestDaemon();
    const file = join(d.dir, 'not-a-socket');
    writeFileSync(file, 'x');
    await expect(startTestDaemon({}, { socket: file })).rejects.toMatchObject({ code: 'KVT_SOCKET_IN_USE' });
    await d.stop();
  });
});
