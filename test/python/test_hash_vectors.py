"""The Python prefix hash chain and namespace ids match test/vectors/prefix-hash.json."""
import json

import pytest

from conftest import VECTORS
from kvtier.hashing import Fingerprint, chunk_hashes, key_hash

with open(VECTORS) as f:
    DATA = json.load(f)


@pytest.mark.parametrize("case", DATA["token_cases"], ids=lambda c: c["name"])
def test_token_case(case):
    fp = Fingerprint(**case["fingerprint"])
    assert fp.canonical().decode() == case["canonical_fingerprint"]
    assert fp.chain_canonical().decode() == case["canonical_chain"]
    assert fp.root().hex() == case["root"]
    assert fp.namespace_id() == case["namespace_id"]
    got = chunk_hashes(fp.root(), case["tokens"], fp.chunk_size, case["save_unfull_chunk"])
    assert [h.hex() for h in got] == case["chunk_hashes"]


@pytest.mark.parametrize("case", DATA["rank_cases"], ids=lambda c: c["name"])
def test_rank_case(case):
    """Hash version 2: every rank hashes the prompt to the same chain, under its own namespace id."""
    base = Fingerprint(**case["fingerprint"])
    for r in case["ranks"]:
        fp = base.replace(tp_rank=r["tp_rank"], pp_rank=r["pp_rank"])
        assert fp.root().hex() == case["root"]
        assert fp.namespace_id() == r["namespace_id"]
        assert [h.hex() for h in chunk_hashes(fp.root(), case["tokens"], fp.chunk_size)] == case["chunk_hashes"]


@pytest.mark.parametrize("case", DATA["key_cases"], ids=lambda c: c["name"])
def test_key_case(case):
    fp = Fingerprint(**case["fingerprint"])
    assert fp.root().hex() == case["root"]
    got = [key_hash(fp.root(), bytes.fromhex(k)).hex() for k in case["keys_hex"]]
    assert got == case["key_hashes"]


@pytest.mark.parametrize("case", DATA["seeded_cases"], ids=lambda c: c["name"])
def test_seeded_case(case):
    """The vLLM connector's seed from the extra keys, and the seeded chain, as the vectors say."""
    from types import SimpleNamespace

    from kvtier.hashing import seeded_root
    from kvtier.vllm.keys import extra_keys_seed, request_seed

    mm = [(m["hash"], m["offset"], m["length"]) for m in case["mm"]]
    seed = extra_keys_seed(case["cache_salt"], case["lora"], mm)
    assert seed.hex() == case["seed_hex"]
    req = SimpleNamespace(cache_salt=case["cache_salt"] or None,
                          lora_request=SimpleNamespace(lora_name=case["lora"]) if case["lora"] else None,
                          mm_features=[SimpleNamespace(identifier=h, mm_position=SimpleNamespace(offset=o, length=n))
                                       for h, o, n in mm] or None)
    assert request_seed(req) == (seed, None)
    fp = Fingerprint(**case["fingerprint"])
    start = seeded_root(fp.root(), seed)
    assert start.hex() == case["seeded_root"]
    assert [h.hex() for h in chunk_hashes(start, case["tokens"], fp.chunk_size)] == case["chunk_hashes"]
    assert [key_hash(start, bytes.fromhex(k)).hex() for k in case["keys_hex"]] == case["key_hashes"]


def test_ranks_share_the_chain_root_and_every_other_field_changes_it():
    base = Fingerprint(model="m", dtype="bfloat16", kv_layout="kv-NHD-x2", tp_size=2, pp_size=2)
    assert base.replace(tp_rank=1).root() == base.replace(pp_rank=1).root() == base.root()
    others = [base.replace(model="m2"), base.replace(tp_size=4), base.replace(pp_size=1), base.replace(mla=True),
              base.replace(cache_salt="t"), base.replace(block_size=32)]
    assert len({fp.root() for fp in others} | {base.root()}) == len(others) + 1


def test_every_fingerprint_field_changes_the_namespace():
    base = Fingerprint(model="m", dtype="bfloat16", kv_layout="kv-NHD-x2")
    changed = [base.replace(model="m2"), base.replace(dtype="float16"), base.replace(kv_layout="kv-HND-x2"),
               base.replace(chunk_size=128), base.replace(block_size=32), base.replace(tp_rank=1),
               base.replace(tp_size=2), base.replace(pp_rank=1), base.replace(pp_size=2),
               base.replace(mla=True), base.replace(cache_salt="t")]
    ids = {fp.namespace_id() for fp in changed} | {base.namespace_id()}
    assert len(ids) == len(changed) + 1
