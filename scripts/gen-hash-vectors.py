#!/usr/bin/env python3
"""Writes test/vectors/prefix-hash.json from an independent implementation of
the prefix hash chain (hashlib only), so the TypeScript and Python clients are
both checked against a third reading of DESIGN.md rather than against each other."""
import hashlib
import json
import os
import struct

FIELDS = ["model", "dtype", "kv_layout", "chunk_size", "block_size", "tp_rank",
          "tp_size", "pp_rank", "pp_size", "mla", "cache_salt"]
RANKS = ("tp_rank", "pp_rank")


def text(fp, header, names):
    out = header
    for name in names:
        v = fp[name]
        if isinstance(v, bool):
            v = "1" if v else "0"
        out += f"{name}={v}\n"
    return out.encode()


def canonical(fp):
    """Hash version 2: the rank's namespace id hashes every field."""
    return text(fp, "kvtier-namespace-v2\n", FIELDS)


def chain_canonical(fp):
    """Hash version 2: the chain root h0 hashes every field but the ranks."""
    return text(fp, "kvtier-chain-v2\n", [n for n in FIELDS if n not in RANKS])


def chain_root(fp):
    return hashlib.sha256(chain_canonical(fp)).digest()


def namespace_id(fp):
    return hashlib.sha256(canonical(fp)).digest()[:16].hex()


def chain(root, tokens, chunk_size, include_partial):
    out, h = [], root
    for start in range(0, len(tokens), chunk_size):
        chunk = tokens[start:start + chunk_size]
        if len(chunk) < chunk_size and not include_partial:
            break
        d = hashlib.sha256(struct.pack(f"<{len(chunk)}I", *chunk)).digest()
        h = hashlib.sha256(h + d).digest()
        out.append(h.hex())
    return out


def extra_keys_seed(cache_salt, lora, mm):
    """The per-request chain seed the vLLM connector derives from what vLLM puts in its block
    hashes' extra keys: b"" when there is none (those requests share with unseeded engines)."""
    if not cache_salt and not lora and not mm:
        return b""
    text = ("kvtier-extra-keys-v1\n" f"cache_salt={cache_salt}\n" f"lora={lora}\n"
            "mm=" + ",".join(f"{h}@{off}+{n}" for h, off, n in mm) + "\n")
    return hashlib.sha256(text.encode()).digest()


def main():
    base = {"model": "meta-llama/Llama-3.1-8B-Instruct", "dtype": "bfloat16",
            "kv_layout": "flash_attn:2xNBxBSxHxD", "chunk_size": 256, "block_size": 16,
            "tp_rank": 0, "tp_size": 1, "pp_rank": 0, "pp_size": 1, "mla": False, "cache_salt": ""}
    cases = []
    specs = [
        ("empty prompt", base, [], False),
        ("one full chunk, 256 tokens 0..255", base, list(range(256)), False),
        ("1000 tokens: 3 full chunks, partial dropped", base, [(i * 7919) % 128256 for i in range(1000)], False),
        ("1000 tokens with save_unfull_chunk", base, [(i * 7919) % 128256 for i in range(1000)], True),
        ("large token ids (u32 edge)", {**base, "chunk_size": 16}, [0xFFFFFFFF, 0x80000000, 1, 0] * 8, False),
        ("another tp rank", {**base, "tp_rank": 3, "tp_size": 8}, list(range(512)), False),
        ("tenant salt", {**base, "cache_salt": "tenant-a"}, list(range(512)), False),
        ("MLA, non-ascii model name", {**base, "model": "deepseek-ai/DeepSeek-V3 \u00e9", "mla": True,
                                        "kv_layout": "mla:NBxBSx576", "chunk_size": 64}, list(range(200)), True),
    ]
    for name, fp, tokens, partial in specs:
        root = chain_root(fp)
        cases.append({"name": name, "fingerprint": fp, "save_unfull_chunk": partial, "tokens": tokens,
                      "canonical_fingerprint": canonical(fp).decode(),
                      "canonical_chain": chain_canonical(fp).decode(), "root": root.hex(),
                      "namespace_id": namespace_id(fp),
                      "chunk_hashes": chain(root, tokens, fp["chunk_size"], partial)})
    # Every rank of one engine: one chain (the same root and chunk hashes), one namespace id each.
    rank_cases = []
    for tp_size, pp_size, mla in ((2, 1, False), (4, 2, False), (8, 1, True)):
        eng = {**base, "tp_size": tp_size, "pp_size": pp_size, "mla": mla}
        toks = list(range(512))
        ranks = [{"tp_rank": t, "pp_rank": p, "namespace_id": namespace_id({**eng, "tp_rank": t, "pp_rank": p})}
                 for p in range(pp_size) for t in range(tp_size)]
        rank_cases.append({"name": f"tp{tp_size} pp{pp_size}" + (" mla" if mla else ""), "fingerprint": eng,
                           "tokens": toks, "root": chain_root(eng).hex(), "ranks": ranks,
                           "chunk_hashes": chain(chain_root(eng), toks, eng["chunk_size"], False)})
    root = chain_root(base)
    keys = [bytes.fromhex("00" * 32), b"sglang-page-1", bytes(range(40))]
    key_case = {"name": "opaque keys", "fingerprint": base, "keys_hex": [k.hex() for k in keys],
                "root": root.hex(),
                "key_hashes": [hashlib.sha256(root + b"k" + k).digest().hex() for k in keys]}
    seeded = []
    extra = [("salt only", "tenant-7", "", []), ("LoRA adapter", "", "sql-lora", []),
             ("two images", "", "", [("9f2c1e", 5, 576), ("a0b1c2", 700, 576)]),
             ("salt, LoRA and an image", "t", "lora-1", [("ff" * 32, 0, 64)])]
    tokens = [(i * 7919) % 128256 for i in range(600)]
    for name, salt, lora, mm in extra:
        seed = extra_keys_seed(salt, lora, mm)
        start = hashlib.sha256(root + b"s" + seed).digest()
        seeded.append({"name": name, "fingerprint": base, "cache_salt": salt, "lora": lora,
                       "mm": [{"hash": h, "offset": o, "length": n} for h, o, n in mm],
                       "seed_hex": seed.hex(), "seeded_root": start.hex(), "tokens": tokens,
                       "chunk_hashes": chain(start, tokens, base["chunk_size"], False),
                       "keys_hex": [k.hex() for k in keys],
                       "key_hashes": [hashlib.sha256(start + b"k" + k).digest().hex() for k in keys]})
    out = {"description": "kvtier prefix hash chain vectors, hash version 2 (h0 = SHA-256(canonical chain: "
                          "the fingerprint without tp_rank/pp_rank, header kvtier-chain-v2); a rank's namespace id = "
                          "SHA-256(canonical fingerprint, header kvtier-namespace-v2)[0:16]; a chunk is (namespace id, h_i); "
                          "d_i = SHA-256(LE u32 tokens of chunk i); h_i = SHA-256(h_{i-1} || d_i); "
                          "opaque key k: SHA-256(h0 || 'k' || k)); a per-request seed s (ChunkAddress.seed) "
                          "starts the chain at h0' = SHA-256(h0 || 's' || s); the vLLM connector's seed is "
                          "SHA-256('kvtier-extra-keys-v1\\ncache_salt=..\\nlora=..\\nmm=hash@offset+length,..\\n'), "
                          "none without extra keys",
           "token_cases": cases, "rank_cases": rank_cases, "key_cases": [key_case],
           "seeded_cases": seeded}
    path = os.path.join(os.path.dirname(__file__), "..", "test", "vectors", "prefix-hash.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
