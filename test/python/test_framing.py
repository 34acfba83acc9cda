"""Frames, packed u32 and the runtime-built protocol messages."""
import ast
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from kvtier import proto
from kvtier.errors import ProtocolError
from kvtier.client import address
from kvtier.framing import FrameDecoder, encode_frame, frame_parts, lookup_frame_parts, pack_u32, u32_array, unpack_u32


def test_lookup_frame_parts_are_the_encoded_envelope():
    """The client's zero-copy Lookup frame is byte for byte what protobuf writes."""
    for n in (1, 256, 131072):
        tokens = [(i * 2654435761) & 0xFFFFFFFF for i in range(n)]
        for request_id in (1, 127, 128, 1 << 40):
            for ttl, no_lease, seed in ((0, False, b""), (300, False, b"\x07" * 32), (600000, True, b"s" * 200)):
                want = encode_frame(proto.envelope(request_id, proto.Lookup(
                    address=address(tokens, None, seed), lease_ttl_ms=ttl, no_lease=no_lease)))
                parts = lookup_frame_parts(request_id, u32_array(tokens), ttl, no_lease, seed)
                assert b"".join(memoryview(p).cast("B").tobytes() for p in parts) == want
    env = proto.envelope(3, proto.Ping())
    assert b"".join(frame_parts(env)) == encode_frame(env)


def test_pack_u32_is_little_endian():
    assert pack_u32([1, 0xFFFFFFFF, 0x01020304]) == b"\x01\x00\x00\x00\xff\xff\xff\xff\x04\x03\x02\x01"
    assert unpack_u32(pack_u32([5, 6, 7])) == [5, 6, 7]
    # A list (packed by fromlist), a tuple and a range pack alike; a list's bad value still raises.
    assert u32_array([1, 0xFFFFFFFF]).tobytes() == u32_array((1, 0xFFFFFFFF)).tobytes() == pack_u32(iter([1, 0xFFFFFFFF]))
    for bad in ([-1], [1 << 32]):
        with pytest.raises(OverflowError):
            u32_array(bad)
    with pytest.raises(ProtocolError):
        unpack_u32(b"\x00\x01\x02")


def test_frames_roundtrip_split_at_every_byte():
    envs = [proto.envelope(7, proto.Lookup(address=proto.ChunkAddress(tokens=pack_u32(range(300))),
                                           lease_ttl_ms=5000)),
            proto.envelope(8, proto.StoreCopied(stored_chunks=3)),
            proto.envelope(9, proto.Ping())]
    stream = b"".join(encode_frame(e) for e in envs)
    assert stream[:4] == len(envs[0].SerializeToString()).to_bytes(4, "little")
    for cut in range(len(stream)):
        dec = FrameDecoder()
        got = dec.feed(stream[:cut]) + dec.feed(stream[cut:])
        assert [e.id for e in got] == [7, 8, 9]
        assert proto.body_of(got[0])[1].lease_ttl_ms == 5000
        assert proto.body_of(got[1]) [0] == "store_copied"
        assert [e.id for e in dec.feed(encode_frame(envs[2]))] == [9]  # nothing left over from the stream


def test_frames_fed_in_small_pieces_and_large_frames_across_feeds():
    """Headers and bodies split over many feeds (any bytes-like input), and a 4 MiB frame
    arriving in 1 MiB reads as the client's reader gets it."""
    big = proto.envelope(1, proto.GetOk(found=True, value=bytes(range(256)) * (16 << 10)))
    envs = [proto.envelope(2, proto.Ping()), big, proto.envelope(3, proto.Pong())]
    stream = b"".join(encode_frame(e) for e in envs)
    dec = FrameDecoder()
    got = [env for i in range(0, 64) for env in dec.feed(bytearray(stream[i:i + 1]))]
    got += [env for i in range(64, len(stream), 1 << 20) for env in dec.feed(memoryview(stream)[i:i + (1 << 20)])]
    assert [e.id for e in got] == [2, 1, 3]
    assert got[1].get_ok.value == big.get_ok.value


def test_oversized_and_garbage_frames_raise():
    with pytest.raises(ProtocolError):
        FrameDecoder(max_frame=10).feed((100).to_bytes(4, "little"))
    with pytest.raises(ProtocolError):
        FrameDecoder().feed((3).to_bytes(4, "little") + b"\xff\xff\xff")


def test_every_envelope_body_has_a_class():
    assert set(proto.BODY_FIELDS.values()) == {f.name for f in proto.Envelope.DESCRIPTOR.oneofs[0].fields}
    assert proto.BODY_FIELDS["RetrieveDone"] == "retrieve_done"


@pytest.mark.skipif(shutil.which("protoc") is None, reason="protoc not installed: descriptor drift not checked")
def test_committed_descriptor_matches_proto_file():
    tool = os.path.join(REPO, "integrations", "python", "tools", "gen_descriptor.py")
    r = subprocess.run([sys.executable, tool, "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_proto_stubs_name_every_message_and_field():
    """kvtier/proto.pyi (generated with the descriptor) declares each message class the
    module builds, with each of its fields, so type checkers see no Any."""
    stub = os.path.join(REPO, "integrations", "python", "kvtier", "proto.pyi")
    with open(stub) as f:
        tree = ast.parse(f.read())
    declared = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            declared[node.name] = {n.target.id if isinstance(n, ast.AnnAssign) else n.name
                                   for n in node.body if isinstance(n, (ast.AnnAssign, ast.FunctionDef))} - {"__init__"}
    assert set(declared) == set(proto.MESSAGE_NAMES)
    for name in proto.MESSAGE_NAMES:
        assert declared[name] == {f.name for f in getattr(proto, name).DESCRIPTOR.fields}, name
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert functions == {"envelope", "body_of"} and all(callable(getattr(proto, f)) for f in functions)
