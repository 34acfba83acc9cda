"""kvtier: Python client and engine integrations for the kvtier KV-cache daemon.

Importing this package needs only protobuf; torch is imported where tensors
are touched, vLLM and SGLang only by kvtier.vllm / kvtier.sglang.

    from kvtier import KvtierClient, Fingerprint
    c = KvtierClient("/tmp/kvtier.sock", Fingerprint(model="m", dtype="bfloat16", kv_layout="kv-NHD-x2"))
    c.put(b"k", b"v"); c.get(b"k")

The daemon's chunk identities, computed on this side (pinned to the daemon's
by test/vectors/prefix-hash.json), for tools that address chunks directly:

    fp.namespace_id()                               # the namespace's id (hex)
    chunk_hashes(fp.root(), tokens, fp.chunk_size)  # a hash per full chunk of a prompt
    key_hash(fp.root(), page_key)                   # what an opaque key (SGLang page) hashes to
    # a chunk's Valkey key (default key_prefix): f"kvtier:{{{fp.namespace_id()}:{h.hex()}}}"
"""
from .client import KvtierClient, Pending, address
from .errors import DaemonUnavailable, Forbidden, KvtierError, ProtocolError, RequestTimeout
from .framing import NO_BLOCK, FrameDecoder, encode_frame, pack_u32, unpack_u32
from .hashing import Fingerprint, chunk_hashes, key_hash

__all__ = [
    "KvtierClient", "Pending", "address", "KvtierError", "DaemonUnavailable", "RequestTimeout", "Forbidden",
    "ProtocolError", "NO_BLOCK", "FrameDecoder", "encode_frame", "pack_u32", "unpack_u32",
    "Fingerprint", "chunk_hashes", "key_hash",
]
__version__ = "0.1.0"
