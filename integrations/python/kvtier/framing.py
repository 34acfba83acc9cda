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

from . import proto
from .errors import ProtocolError

HEADER = struct.Struct("<I")
DEFAULT_MAX_FRAME = 1 << 30
NO_BLOCK = 0xFFFFFFFF


def encode_frame(env: Any) -> bytes:
    """Serializes an Envelope into one length-prefixed frame."""
    data = env.SerializeToString()
    return HEADER.pack(len(data)) + data


def pack_u32(values: Iterable[int]) -> bytes:
    """Packs ints (0..2^32-1) as little-endian u32 bytes."""
    arr = array("I", values) if not isinstance(values, array) else values
    if arr.itemsize != 4:  # pragma: no cover - exotic platforms
        arr = array("L", values)
    if struct.pack("=I", 1) != struct.pack("<I", 1):  # pragma: no cover - big-endian hosts
        arr = array(arr.typecode, arr)
        arr.byteswap()
    return arr.tobytes()


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
