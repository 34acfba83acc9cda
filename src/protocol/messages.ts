/**
 * The generated protobuf types under short names, and the frame encoder.
 *
 * src/protocol/gen is generated from proto/kvtier.proto at build time
 * (scripts/build-proto.mjs); nothing else imports it directly. Frames are
 * [u32 LE length][Envelope]: the length is reserved as a fixed32 in the same
 * protobufjs Writer and patched afterwards, so encoding costs one buffer and
 * no extra copy of the payload.
 * 64-bit fields (ids, leases, sizes) decode as plain numbers, not Long
 * objects: every such value kvtier sends stays below 2^53.
 */
import protobuf from 'protobufjs/minimal.js';
import { FRAME_HEADER_BYTES } from '../../proto/constants.js';
import { kvtier } from './gen/kvtier.js';

protobuf.util.Long = undefined as unknown as typeof protobuf.util.Long;
protobuf.configure();

export const pb = kvtier.v1;
export type Envelope = kvtier.v1.Envelope;
export type EnvelopeInit = kvtier.v1.IEnvelope;
export type BodyName = NonNullable<Envelope['body']>;

export { FRAME_HEADER_BYTES, PROTOCOL_VERSION, SKIP_BLOCK } from '../../proto/constants.js';

export function encodeFrame(message: EnvelopeInit): Buffer {
  const writer = protobuf.Writer.create();
  writer.fixed32(0);
  pb.Envelope.encode(message, writer);
  const bytes = writer.finish();
  const frame = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  frame.writeUInt32LE(frame.length - FRAME_HEADER_BYTES, 0);
  return frame;
}

export function decodeEnvelope(payload: Buffer): Envelope {
  return pb.Envelope.decode(payload);
}

/**
 * Envelope field numbers of the empty-bodied messages (proto/kvtier.proto),
 * for emptyBodyFrame; test/protocol/messages.test.ts holds them to the
 * generated encoder.
 */
const EMPTY_BODY_FIELD = { ping: 12, pong: 13, ack: 23 } as const;
export type EmptyBody = keyof typeof EMPTY_BODY_FIELD;

/** The daemon's empty answers, shared: dispatch returns these and encodeReply knows them by identity. */
export const PONG: Readonly<EnvelopeInit> = Object.freeze({ pong: Object.freeze({}) });
export const ACK: Readonly<EnvelopeInit> = Object.freeze({ ack: Object.freeze({}) });

function varintBytes(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n;
}

function putVarint(buf: Buffer, at: number, v: number): number {
  while (v >= 0x80) {
    buf[at++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  buf[at++] = v;
  return at;
}

/**
 * Envelope{id, <body>: {}} (a Ping, Pong or Ack) written byte for byte into
 * one small Buffer. These frames are the socket's round trip; protobufjs'
 * Writer allocates a writer, an op list and a spread envelope per frame,
 * which was the daemon's per-Ping garbage.
 */
export function emptyBodyFrame(id: number, body: EmptyBody): Buffer {
  const key = (EMPTY_BODY_FIELD[body] << 3) | 2; // length-delimited
  const payload = 1 + varintBytes(id) + varintBytes(key) + 1;
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload);
  frame.writeUInt32LE(payload, 0);
  frame[FRAME_HEADER_BYTES] = 0x08; // Envelope.id = 1, varint
  let at = putVarint(frame, FRAME_HEADER_BYTES + 1, id);
  at = putVarint(frame, at, key);
  frame[at] = 0; // an empty message
  return frame;
}

/**
 * The id of a payload that is exactly Envelope{id, ping: {}} as every client
 * writes it (id, then an empty ping), else -1: the daemon answers those
 * without decoding an Envelope. Anything else, a Ping with other fields or
 * ids above 2^53 included, takes the generic decoder.
 */
export function plainPingId(payload: Buffer): number {
  const n = payload.length;
  if (n < 4 || n > 11 || payload[0] !== 0x08 || payload[n - 2] !== ((EMPTY_BODY_FIELD.ping << 3) | 2) || payload[n - 1] !== 0) return -1;
  let id = 0;
  let scale = 1;
  for (let i = 1; i < n - 2; i++) {
    const b = payload[i];
    id += (b & 0x7f) * scale;
    scale *= 0x80;
    if ((b & 0x80) === 0) return i === n - 3 && id <= Number.MAX_SAFE_INTEGER ? id : -1;
  }
  return -1;
}

/** A reply frame: the shared empty answers by hand, everything else through protobufjs. */
export function encodeReply(id: number, reply: Readonly<EnvelopeInit>): Buffer {
  if (reply === PONG) return emptyBodyFrame(id, 'pong');
  if (reply === ACK) return emptyBodyFrame(id, 'ack');
  return encodeFrame({ id, ...reply });
}

function varint(out: number[], v: number): void {
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

/**
 * A Lookup by tokens as frame pieces that reference the caller's token bytes
 * instead of copying them into a fresh frame: [length, envelope head][tokens]
 * [tail]. The bytes are a valid encoding of
 * Envelope{id, lookup{address{tokens, seed}, lease_ttl_ms, no_lease}}; a 128K-token
 * prompt is 512 KiB, and allocating that per lookup was what made the client's
 * p99 (V8 collects for external memory pressure).
 */
export function lookupFrameParts(id: number, tokens: Uint8Array, leaseTtlMs: number, noLease: boolean, seed?: Uint8Array | null): Buffer[] {
  // After the tokens, still inside the address: ChunkAddress.seed = 3, bytes.
  const seedPart: number[] = [];
  if (seed != null && seed.byteLength > 0) {
    seedPart.push(0x1a);
    varint(seedPart, seed.byteLength);
    for (let i = 0; i < seed.byteLength; i++) seedPart.push(seed[i]);
  }
  const tail: number[] = [];
  if (leaseTtlMs > 0) {
    tail.push(0x10); // Lookup.lease_ttl_ms = 2, varint
    varint(tail, leaseTtlMs);
  }
  if (noLease) tail.push(0x18, 0x01); // Lookup.no_lease = 3
  const tokensHead: number[] = [0x0a]; // ChunkAddress.tokens = 1, bytes
  varint(tokensHead, tokens.byteLength);
  const addressLength = tokensHead.length + tokens.byteLength + seedPart.length;
  const lookupHead: number[] = [0x0a]; // Lookup.address = 1, message
  varint(lookupHead, addressLength);
  tail.unshift(...seedPart);
  const lookupLength = lookupHead.length + addressLength + tail.length - seedPart.length;
  const head: number[] = [0, 0, 0, 0, 0x08]; // frame length (patched), Envelope.id = 1
  varint(head, id);
  head.push(0xa2, 0x01); // Envelope.lookup = 20, message
  varint(head, lookupLength);
  head.push(...lookupHead, ...tokensHead);
  const first = Buffer.from(head);
  first.writeUInt32LE(first.length - FRAME_HEADER_BYTES + tokens.byteLength + tail.length, 0);
  const view = Buffer.from(tokens.buffer, tokens.byteOffset, tokens.byteLength);
  return tail.length > 0 ? [first, view, Buffer.from(tail)] : [first, view];
}
