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
import { kvtier } from './gen/kvtier.js';

protobuf.util.Long = undefined as unknown as typeof protobuf.util.Long;
protobuf.configure();

export const pb = kvtier.v1;
export type Envelope = kvtier.v1.Envelope;
export type EnvelopeInit = kvtier.v1.IEnvelope;
export type BodyName = NonNullable<Envelope['body']>;

export const PROTOCOL_VERSION = 1;
export const FRAME_HEADER_BYTES = 4;
/** Block id that means "do not write this block" in a block-form Retrieve. */
export const SKIP_BLOCK = 0xffffffff;

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
