/**
 * Malformed, truncated, oversized and unknown frames (fast-check): the
 * offending connection gets an Error or is closed; every other client keeps
 * being served and nothing stored is lost.
 */
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame, decodeEnvelope } from '../../src/protocol/messages.js';
import { FrameDecoder } from '../../src/protocol/framing.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import type { KvtierClient } from '../../src/protocol/client.js';

const MAX_FRAME = 1 << 20;

/** Sends bytes on a fresh raw connection; collects replies until close or quiet. */
async function sendRaw(path: string, bytes: Buffer, quietMs = 60): Promise<{ replies: ReturnType<typeof decodeEnvelope>[]; closed: boolean }> {
  const sock: Socket = connect(path);
  await new Promise((r, j) => {
    sock.once('connect', r);
    sock.once('error', j);
  });
  const decoder = new FrameDecoder(1 << 30);
  const replies: ReturnType<typeof decodeEnvelope>[] = [];
  let closed = false;
  sock.on('data', (d: Buffer) => {
    decoder.push(d, (f) => replies.push(decodeEnvelope(f)));
  });
  sock.on('error', () => {});
  const done = new Promise<void>((r) => sock.once('close', () => {
    closed = true;
    r();
  }));
  sock.write(bytes);
  await Promise.race([done, new Promise((r) => setTimeout(r, quietMs))]);
  sock.destroy();
  return { replies, closed };
}

describe('bad input never hurts the daemon or other clients', () => {
  let d: TestDaemon;
  let good: KvtierClient;
  const key = Buffer.from('survivor');
  const value = Buffer.alloc(100_000, 0x5a);
  beforeAll(async () => {
    d = await startTestDaemon({ max_frame_bytes: MAX_FRAME });
    good = await d.connect({ fingerprint: { model: 'good' } });
    await good.put(key, value);
  });
  afterAll(async () => {
    await d.stop();
  });

  const stillServing = async (): Promise<void> => {
    await good.ping();
    expect((await good.get(key))!.equals(value)).toBe(true);
  };

  it('an oversized length is answered KVT_FRAME_TOO_LARGE and the connection closed', async () => {
    const header = Buffer.alloc(4);
    header.writeUInt32LE(MAX_FRAME + 1);
    const r = await sendRaw(d.socket, header, 2000);
    expect(r.replies[0].error!.code).toBe('KVT_FRAME_TOO_LARGE');
    expect(r.closed).toBe(true);
    await stillServing();
  });

  it('an undecodable envelope is answered KVT_BAD_FRAME and the connection lives on', async () => {
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    const frame = Buffer.concat([Buffer.from([garbage.length, 0, 0, 0]), garbage, encodeFrame({ id: 9, ping: {} })]);
    const r = await sendRaw(d.socket, frame, 300);
    expect(r.replies[0].error!.code).toBe('KVT_BAD_FRAME');
    expect(r.replies[1].id).toBe(9);
    expect(r.replies[1].body).toBe('pong');
    await stillServing();
  });

  it('an envelope without a known body is KVT_UNKNOWN_MESSAGE; a response sent as a request too', async () => {
    // Field 999 (a oneof member from a future protocol version) as a varint.
    const future = Buffer.from([0x08, 0x05, 0xb8, 0x3e, 0x01]);
    const r = await sendRaw(d.socket, Buffer.concat([Buffer.from([future.length, 0, 0, 0]), future, encodeFrame({ id: 6, pong: {} })]), 300);
    expect(r.replies.map((e) => [e.id, e.error?.code])).toEqual([[5, 'KVT_UNKNOWN_MESSAGE'], [6, 'KVT_UNKNOWN_MESSAGE']]);
    await stillServing();
  });

  it('a truncated frame followed by a hang-up loses nothing', async () => {
    const f = encodeFrame({ id: 1, put: { key: Buffer.from('never'), value: Buffer.alloc(5000, 1) } });
    await sendRaw(d.socket, f.subarray(0, f.length - 100), 50);
    await stillServing();
    expect(await good.get(Buffer.from('never'))).toBeNull();
  });

  it('fuzz: random bytes, random truncations and random frames', async () => {
    const hello = encodeFrame({ id: 1, hello: { protocolVersion: 1, fingerprint: { model: 'fuzz' } } });
    const validFrames = [
      encodeFrame({ id: 2, ping: {} }),
      encodeFrame({ id: 3, put: { key: Buffer.from('fz'), value: Buffer.alloc(64, 3) } }),
      encodeFrame({ id: 4, lookup: { address: { tokens: Buffer.alloc(1024, 1) } } }),
      encodeFrame({ id: 5, retrieve: { leaseId: 77, blockIds: Buffer.alloc(12) } }),
      encodeFrame({ id: 6, store: { address: { tokens: Buffer.alloc(1024) }, blockIds: Buffer.alloc(7) } }),
    ];
    const arbFrame = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
      fc.tuple(fc.constantFrom(...validFrames), fc.nat()).map(([f, n]) => f.subarray(0, n % (f.length + 1))),
      fc.uint8Array({ maxLength: 200 }).map((b) => {
        const h = Buffer.alloc(4);
        h.writeUInt32LE(b.length);
        return Buffer.concat([h, b]);
      }),
      fc.constantFrom(...validFrames),
    );
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.array(arbFrame, { minLength: 1, maxLength: 6 }), async (sayHello, frames) => {
        await sendRaw(d.socket, Buffer.concat([sayHello ? hello : Buffer.alloc(0), ...frames]), 5);
      }),
      { numRuns: 150 },
    );
    await stillServing();
    expect(d.daemon.stats().leases).toBeLessThanOrEqual(1);
  });
});
