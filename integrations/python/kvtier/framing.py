"""Frames on the kvtier socket: [u32 little-endian length][Envelope].

Also the packed little-endian u32 encoding used for token ids and block ids
(never varints: a 128K-token prompt is 512 KiB either way, and packed bytes
are hashed and sliced without decoding).
"""
from __future__ import annotations

import struct
from array import array
from collections.abc import Iterable, Sequence
from typing import Any

from . import constants, proto
from .errors import ProtocolError

HEADER = struct.Struct("<I")
DEFAULT_MAX_FRAME = constants.CLIENT_MAX_FRAME_BYTES
NO_BLOCK = constants.SKIP_BLOCK


def encode_frame(env: Any) -> bytes:
    """Serializes an Envelope into one length-prefixed frame."""
    data = env.SerializeToString()
    return HEADER.pack(len(data)) + data


def frame_parts(env: Any) -> tuple[bytes, bytes]:
    """An Envelope's frame as (length header, payload): sent with one sendmsg,
    without the copy of the payload that joining them costs (a 128K-token
    Lookup is 512 KiB)."""
    data = env.SerializeToString()
    return HEADER.pack(len(data)), data


def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def lookup_frame_parts(request_id: int, tokens: Any, lease_ttl_ms: int = 0,
                       no_lease: bool = False) -> list[Any]:
    """A Lookup by tokens as frame pieces around the caller's packed token
    buffer (bytes or array('I')), for one sendmsg: [header + envelope head,
    tokens, tail]. The bytes are the encoding of
    Envelope{id, lookup{address{tokens}, lease_ttl_ms, no_lease}}
    (src/protocol/messages.ts lookupFrameParts is the same); the 512 KiB of a
    128K-token prompt are not copied into a message, serialized and joined."""
    n = memoryview(tokens).nbytes
    tail = b""
    if lease_ttl_ms > 0:
        tail += b"\x10" + _varint(lease_ttl_ms)  # Lookup.lease_ttl_ms = 2
    if no_lease:
        tail += b"\x18\x01"  # Lookup.no_lease = 3
    tokens_head = b"\x0a" + _varint(n)  # ChunkAddress.tokens = 1
    address_len = len(tokens_head) + n
    lookup_head = b"\x0a" + _varint(address_len)  # Lookup.address = 1
    lookup_len = len(lookup_head) + address_len + len(tail)
    env_head = b"\x08" + _varint(request_id) + b"\xa2\x01" + _varint(lookup_len)  # Envelope.id = 1, .lookup = 20
    head = env_head + lookup_head + tokens_head
    length = len(head) + n + len(tail)
    parts: list[Any] = [HEADER.pack(length) + head, tokens]
    if tail:
        parts.append(tail)
    return parts


def u32_array(values: Iterable[int]) -> array:
    """Ints (0..2^32-1) as an array whose buffer is little-endian u32 (no bytes copy)."""
    arr = array("I", values) if not isinstance(values, array) else values
    if arr.itemsize != 4:  # pragma: no cover - exotic platforms
        arr = array("L", values)
    if struct.pack("=I", 1) != struct.pack("<I", 1):  # pragma: no cover - big-endian hosts
        arr = array(arr.typecode, arr)
        arr.byteswap()
    return arr


def pack_u32(values: Iterable[int]) -> bytes:
    """Packs ints (0..2^32-1) as little-endian u32 bytes."""
    return u32_array(values).tobytes()


def unpack_u32(data: bytes) -> list[int]:
    """Inverse of pack_u32."""
    if len(data) % 4:
        raise ProtocolError(f"expected a multiple of 4 bytes for packed u32, got {len(data)}")
    arr = array("I")
    arr.frombytes(data)
    if struct.pack("=I", 1) != struct.pack("<I", 1):  # pragma: no cover
        arr.byteswap()
    return arr.tolist()


class FrameDecoder:
    """Accumulates bytes from the socket and yields complete Envelopes."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[Any]:
        self._buf += data
        out: list[Any] = []
        while len(self._buf) >= 4:
            (length,) = HEADER.unpack_from(self._buf)
            if length > self._max:
                raise ProtocolError(f"frame of {length} bytes exceeds max {self._max}")
            if len(self._buf) < 4 + length:
                break
            body = bytes(self._buf[4:4 + length])
            del self._buf[:4 + length]
            env = proto.Envelope()
            try:
                env.ParseFromString(body)
            except Exception as exc:  # DecodeError differs across runtimes
                raise ProtocolError(f"undecodable Envelope of {length} bytes: {exc}") from exc
            out.append(env)
        return out

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)


def block_table(block_ids: Sequence[int]) -> bytes:
    """Packs a request's block table for Store/Retrieve (NO_BLOCK = don't write)."""
    return pack_u32(block_ids)
