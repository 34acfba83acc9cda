"""KVTierHiCacheStorage over SGLang-shaped host pools (sglang_pools.py) against real
kvtierd processes: pages in block form through the shm staging region, stored in
one process and loaded byte-exact in another; tenants, CP and TP ranks; honest
answers (skipped pages, clear() across tiers, stats)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from kvtier.sglang import KVTierHiCacheStorage
from kvtier.sglang.block_form import page_view

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sglang_pools import PAGE, host_indices, make_pool, storage_config  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
LAYOUTS = [("mha", "layer_first"), ("mha", "page_first"), ("mha", "page_first_direct"), ("mha", "page_head"),
           ("mla", "layer_first"), ("mla", "page_first"), ("mla", "page_first_direct")]


def backend(sock, pool, kind="mha", cfg=None, **extra):
    b = KVTierHiCacheStorage(storage_config(sock, mla=kind == "mla", **(cfg or {}), **extra), {})
    b.register_mem_pool_host(pool)
    return b


def store_in_child(sock, kind, layout, seed, keys, pages, cfg=None, **extra) -> dict:
    spec = {"socket": sock, "kind": kind, "layout": layout, "seed": seed, "keys": keys, "pages": pages,
            "cfg": cfg or {}, "extra": extra}
    env = {**os.environ, "PYTHONPATH": os.path.join(REPO, "integrations", "python")}
    out = subprocess.run([sys.executable, os.path.join(HERE, "sglang_pools.py"), json.dumps(spec)],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def same_page(a, pa, b, pb) -> bool:
    return torch.equal(a.get_data_page(pa * PAGE).view(torch.uint8), b.get_data_page(pb * PAGE).view(torch.uint8))


@pytest.mark.parametrize("kind,layout", LAYOUTS)
def test_pages_stored_in_one_process_load_byte_exact_in_another(daemon, kind, layout):
    keys = [f"{kind}-{layout}-{i}" for i in range(4)]
    child = store_in_child(daemon.socket, kind, layout, 11, keys, [1, 3, 4, 6])
    assert child["ok"] == [True] * 4 and child["mode"] == "blocks"
    assert child["stats"]["block_form_batches"] >= 1 and child["stats"]["inline_batches"] == 0
    src, dst = make_pool(kind, layout, 11), make_pool(kind, layout, zero=True)
    assert page_view(dst) is not None  # one index_copy_ per batch, not page by page
    b = backend(daemon.socket, dst, kind)
    assert b.batch_exists(keys + ["absent"]) == 4
    assert b.batch_get_v1(keys, host_indices([0, 2, 5, 7])) == [True] * 4
    assert b.transfer_mode == "blocks" and b.get_stats()["inline_batches"] == 0
    for s, d in zip([1, 3, 4, 6], [0, 2, 5, 7]):
        assert same_page(src, s, dst, d)
    assert not dst.kv_buffer.view(-1)[0:1].isnan().any()
    untouched = make_pool(kind, layout, zero=True)
    for p in (1, 3, 4, 6):
        assert same_page(untouched, p, dst, p)
    assert b.batch_get_v1([keys[0], "absent", keys[2]], host_indices([1, 3, 4])) == [True, False, False]


def test_batches_larger_than_the_staging_region_go_in_rounds(daemon):
    src, dst = make_pool("mha", "page_first", 5), make_pool("mha", "page_first", zero=True)
    a = backend(daemon.socket, src, kvtier_staging_pages=3)
    b = backend(daemon.socket, dst, kvtier_staging_pages=3)
    keys = [f"round-{i}" for i in range(8)]
    order = [7, 6, 5, 4, 3, 2, 1, 0]
    assert a.batch_set_v1(keys, host_indices(order)) == [True] * 8
    assert b.batch_get_v1(keys, host_indices(list(range(8)))) == [True] * 8
    for i, p in enumerate(order):
        assert same_page(src, p, dst, i)


def test_inline_and_block_form_pages_are_interchangeable(daemon):
    src, dst = make_pool("mha", "layer_first", 6), make_pool("mha", "layer_first", zero=True)
    inline = backend(daemon.socket, src, kvtier_block_form=False)
    blocks = backend(daemon.socket, dst)
    assert inline.batch_set_v1(["x0", "x1"], host_indices([2, 3])) == [True, True]
    assert inline.transfer_mode == "inline"
    assert blocks.batch_get_v1(["x0", "x1"], host_indices([4, 5])) == [True, True]
    assert blocks.transfer_mode == "blocks"
    assert same_page(src, 2, dst, 4) and same_page(src, 3, dst, 5)
    assert blocks.batch_set_v1(["y0"], host_indices([4])) == [True]
    back = make_pool("mha", "layer_first", zero=True)
    assert backend(daemon.socket, back, kvtier_block_form=False).batch_get_v1(["y0"], host_indices([0])) == [True]
    assert same_page(src, 2, back, 0)


def test_tenants_with_different_salts_never_share_a_page_across_processes(daemon):
    keys = ["shared-prefix-0", "shared-prefix-1"]
    assert store_in_child(daemon.socket, "mha", "layer_first", 7, keys, [0, 1],
                          kvtier_cache_salt="tenant-a")["ok"] == [True, True]
    dst = make_pool("mha", "layer_first", zero=True)
    other = backend(daemon.socket, dst, kvtier_cache_salt="tenant-b")
    assert other.batch_exists(keys) == 0
    assert other.batch_get_v1(keys, host_indices([0, 1])) == [False, False]
    assert torch.count_nonzero(dst.kv_buffer) == 0
    same = backend(daemon.socket, dst, kvtier_cache_salt="tenant-a")
    assert same.batch_get_v1(keys, host_indices([0, 1])) == [True, True]
    assert same_page(make_pool("mha", "layer_first", 7), 1, dst, 1)


def test_attention_cp_ranks_are_separate_namespaces_even_for_mla(daemon):
    pool = make_pool("mla", "page_first", 8)
    r0 = backend(daemon.socket, pool, "mla", cfg={"cp_rank": 0, "cp_size": 2, "tp_rank": 0, "tp_size": 2})
    r1 = backend(daemon.socket, pool, "mla", cfg={"cp_rank": 1, "cp_size": 2, "tp_rank": 1, "tp_size": 2})
    t1 = backend(daemon.socket, pool, "mla", cfg={"cp_rank": 0, "cp_size": 2, "tp_rank": 1, "tp_size": 2})
    assert r0.batch_set_v1(["cp-page"], host_indices([0])) == [True]
    assert r1.batch_exists(["cp-page"]) == 0
    assert t1.batch_exists(["cp-page"]) == 1  # MLA: TP ranks of one CP rank share


def test_side_pool_keys_carry_the_tp_rank_under_mla(daemon):
    from types import SimpleNamespace

    kv, side = make_pool("mla", "layer_first", 9), make_pool("mha", "page_first", 10)
    r0 = backend(daemon.socket, kv, "mla", cfg={"tp_rank": 0, "tp_size": 2})
    r1 = backend(daemon.socket, kv, "mla", cfg={"tp_rank": 1, "tp_size": 2})
    for r in (r0, r1):
        r.register_mem_host_pool_v2(side, "mamba")
        r.register_mem_host_pool_v2(side, "indexer")
    keys = ["m0", "m1"]
    assert r0.batch_set_v1(keys, host_indices([0, 1])) == [True, True]
    for name in ("mamba", "indexer"):
        t = SimpleNamespace(name=name, keys=keys[-1:], host_indices=host_indices([1]), hit_policy="trailing_pages")
        assert r0.batch_set_v2([t]) == {name: [True]}
    probe = [SimpleNamespace(name="mamba", keys=keys[-1:], hit_policy="trailing_pages")]
    assert r1.batch_exists_v2(keys, probe).kv_hit_pages == 0   # rank 1's Mamba shard is not rank 0's
    assert r0.batch_exists_v2(keys, probe).kv_hit_pages == 2
    probe = [SimpleNamespace(name="indexer", keys=keys[-1:], hit_policy="trailing_pages")]
    assert r1.batch_exists_v2(keys, probe).kv_hit_pages == 2   # replicated across TP ranks


def test_batch_set_is_false_for_pages_the_daemon_did_not_keep(daemon_factory):
    d = daemon_factory("max_local_cpu_size: 0.001\n")  # 1 MB: one 2 MiB page never fits
    pool = make_pool("mha", "layer_first", 12)
    s = backend(d.socket, pool, kvtier_block_form=False)
    big = torch.zeros(1 << 20, dtype=torch.bfloat16)
    assert s.batch_set(["big"], [big]) is False
    assert s.set("big", big) is False
    assert s.batch_set(["small"], [pool.get_data_page(0)]) is True


def test_batch_set_v1_in_block_form_is_false_for_skipped_pages(daemon_factory):
    d = daemon_factory("max_local_cpu_size: 0.001\n")
    pool = make_pool("mha", "layer_first", 13)   # 3 KiB pages: ~300 fit in 1 MB
    holder = backend(d.socket, pool)
    keys = [f"fill-{i}" for i in range(400)]
    got = []
    for s in range(0, 400, 8):
        got += holder.batch_set_v1(keys[s:s + 8], host_indices([i % 8 for i in range(s, s + 8)]))
        holder._conn().lookup(keys=[k.encode() for k in keys[s:s + 8]])   # leased (pinned) until close
    assert holder.transfer_mode == "blocks"
    assert True in got and False in got
    held = [bool(f) for f in holder._conn().exists([k.encode() for k in keys]).found]
    assert got == held
    assert holder.get_stats()["pages_not_stored"] == got.count(False)


def test_clear_removes_the_namespace_from_host_and_valkey(daemon_factory, valkey):
    url = f"remote_url: valkey://127.0.0.1:{valkey}\n"
    da, db = daemon_factory(url), daemon_factory(url)
    pool = make_pool("mha", "page_first", 14)
    a, b = backend(da.socket, pool), backend(db.socket, make_pool("mha", "page_first", zero=True))
    other_tenant = backend(da.socket, pool, kvtier_cache_salt="keep-me")
    keys = [f"c{i}" for i in range(3)]
    assert a.batch_set_v1(keys, host_indices([0, 1, 2])) == [True] * 3
    assert other_tenant.batch_set_v1(keys, host_indices([0, 1, 2])) == [True] * 3
    deadline = time.monotonic() + 20
    while b.batch_exists(keys) < 3 and time.monotonic() < deadline:   # daemon b sees them only in Valkey
        time.sleep(0.1)
    assert b.batch_exists(keys) == 3
    a.clear()
    assert a.batch_exists(keys) == 0
    fresh = daemon_factory(url)   # an empty host tier: only Valkey could answer
    assert backend(fresh.socket, make_pool("mha", "page_first", zero=True)).batch_exists(keys) == 0
    assert backend(fresh.socket, pool, kvtier_cache_salt="keep-me").batch_exists(keys) == 3


def test_get_stats_reports_this_backends_figures(daemon):
    pool = make_pool("mha", "layer_first", 15)
    s = backend(daemon.socket, pool)
    s.batch_set_v1(["s0", "s1"], host_indices([0, 1]))
    s.batch_get_v1(["s0", "nope"], host_indices([2, 3]))
    st = s.get_stats()
    assert (st["transfer_mode"], st["pages_set"], st["pages_stored"], st["pages_get"], st["pages_loaded"],
            st["pages_missed"]) == ("blocks", 2, 2, 2, 1, 1)
    assert isinstance(st["daemon"], dict) and st["daemon"]
