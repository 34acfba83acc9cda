"""Namespace fingerprint and prefix hash chain, bit-for-bit as the daemon (hash version 2).

h0 = SHA-256(canonical chain text: the fingerprint without tp_rank/pp_rank, the same for
every rank of an engine); d_i = SHA-256(LE u32 tokens of chunk i); h_i = SHA-256(h_{i-1} ||
d_i); an opaque key k hashes to SHA-256(h0 || 'k' || k). The namespace id names one rank:
the first 16 bytes of SHA-256(canonical fingerprint text, ranks included) in hex. A chunk is
the pair (namespace id, h_i), so one hashing of a prompt serves every rank. The reference is
scripts/gen-hash-vectors.py; test/vectors/prefix-hash.json pins the values.
The daemon does its own hashing for Lookup/Store; the client needs the chain to
name namespaces, check HelloOk, and for tools that address chunks directly.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields
from collections.abc import Sequence
from typing import Any

from .framing import pack_u32


_RANK_FIELDS = ("tp_rank", "pp_rank")


@dataclass(frozen=True)
class Fingerprint:
    """What makes two workers' KV interchangeable (proto NamespaceFingerprint)."""

    model: str
    dtype: str
    kv_layout: str
    chunk_size: int = 256
    block_size: int = 16
    tp_rank: int = 0
    tp_size: int = 1
    pp_rank: int = 0
    pp_size: int = 1
    mla: bool = False
    cache_salt: str = ""

    def _text(self, header: str, ranks: bool) -> bytes:
        text = header
        for f in fields(self):
            if not ranks and f.name in _RANK_FIELDS:
                continue
            v = getattr(self, f.name)
            if isinstance(v, bool):
                v = "1" if v else "0"
            text += f"{f.name}={v}\n"
        return text.encode()

    def canonical(self) -> bytes:
        """The exact bytes the namespace id hashes (field order is part of the format)."""
        return self._text("kvtier-namespace-v2\n", True)

    def chain_canonical(self) -> bytes:
        """The exact bytes hashed into h0: every field but the ranks."""
        return self._text("kvtier-chain-v2\n", False)

    def root(self) -> bytes:
        """h0, the chain root: equal for every tp/pp rank of the engine."""
        return hashlib.sha256(self.chain_canonical()).digest()

    def namespace_id(self) -> str:
        """This rank's namespace id (hex), the first half of every chunk's key."""
        return hashlib.sha256(self.canonical()).digest()[:16].hex()

    def to_proto(self) -> Any:
        from . import proto

        return proto.NamespaceFingerprint(**asdict(self))

    def replace(self, **changes: Any) -> "Fingerprint":
        return Fingerprint(**{**asdict(self), **changes})


def chunk_hashes(root: bytes, tokens: Sequence[int], chunk_size: int,
                 include_partial: bool = False) -> list[bytes]:
    """Chained hashes of the chunks of `tokens` (a trailing partial chunk only if asked)."""
    out: list[bytes] = []
    h = root
    for start in range(0, len(tokens), chunk_size):
        chunk = tokens[start:start + chunk_size]
        if len(chunk) < chunk_size and not include_partial:
            break
        d = hashlib.sha256(pack_u32(chunk)).digest()
        h = hashlib.sha256(h + d).digest()
        out.append(h)
    return out


def seeded_root(root: bytes, seed: bytes = b"") -> bytes:
    """The chain's start for a request with a seed (ChunkAddress.seed): SHA-256(h0 || 's' ||
    seed); the namespace root itself without one. The daemon does the same (prefix-hash.ts)."""
    return hashlib.sha256(root + b"s" + seed).digest() if seed else root


def key_hash(root: bytes, key: bytes) -> bytes:
    """Hash of an opaque client key (SGLang page hash) inside a namespace."""
    return hashlib.sha256(root + b"k" + key).digest()
