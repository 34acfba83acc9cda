"""A request's chunk identity beyond its token ids: what vLLM puts in its block hashes'
extra keys (vllm/v1/core/kv_cache_utils.py generate_block_hash_extra_keys: the LoRA
adapter, the multimodal features' hashes and positions, the request's cache_salt).

kvtier folds them into one per-request seed of the chunk hash chain, sent as
ChunkAddress.seed: the daemon starts the chain at SHA-256(h0 || "s" || seed), so
the same prompt under another salt, adapter or image is a miss, under the same
ones a hit. The seed covers every multimodal feature of the request, not only
those inside a chunk (vLLM's per-block keys): coarser (a text prefix before an
image is not shared between requests with different images), never wrong.
A request without extra keys gets no seed, so it shares chunks with engines of
before the seed. The layout of the seeded text is pinned by test/vectors
(scripts/gen-hash-vectors.py derives it independently).

Requests kvtier still cannot key correctly are bypassed, with a reason counted in
the connector stats (bypassed_<reason>): prompt embeddings (the KV depends on
vectors, not tokens), a multimodal feature without a hash, a LoRA request
without a name, and any seed when the daemon is too old to honour it.
"""
from __future__ import annotations

import hashlib
from typing import Any, Optional, Sequence


def extra_keys_seed(cache_salt: str, lora: str, mm: Sequence[tuple[str, int, int]]) -> bytes:
    """The seed of (cache_salt, LoRA name, [(mm hash, offset, length), ...]); b"" for none."""
    if not cache_salt and not lora and not mm:
        return b""
    text = ("kvtier-extra-keys-v1\n" f"cache_salt={cache_salt}\n" f"lora={lora}\n"
            "mm=" + ",".join(f"{h}@{off}+{n}" for h, off, n in mm) + "\n")
    return hashlib.sha256(text.encode()).digest()


def request_seed(request: Any) -> tuple[bytes, Optional[str]]:
    """(seed, None), or (b"", reason) for a request kvtier cannot key correctly."""
    if getattr(request, "prompt_embeds", None) is not None:
        return b"", "prompt_embeds"
    salt = getattr(request, "cache_salt", None) or ""
    lora = ""
    lr = getattr(request, "lora_request", None)
    if lr is not None:
        lora = str(getattr(lr, "lora_name", None) or getattr(lr, "name", None) or "")
        if not lora:
            return b"", "lora_unnamed"
    mm: list[tuple[str, int, int]] = []
    for f in getattr(request, "mm_features", None) or ():
        ident = getattr(f, "identifier", None) or getattr(f, "mm_hash", None)
        pos = getattr(f, "mm_position", None)
        if not ident or pos is None:
            return b"", "multimodal_unhashed"
        mm.append((str(ident), int(getattr(pos, "offset", 0)), int(getattr(pos, "length", 0))))
    mm.sort(key=lambda t: (t[1], t[0]))
    return extra_keys_seed(str(salt), lora, mm), None
