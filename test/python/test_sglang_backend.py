"""KVTierHiCacheStorage with stand-in SGLang objects (HiCacheStorageConfig,
host KV pool) against a real kvtierd: legacy and zero-copy v1 calls, prefix
exists, rank isolation, daemon absent."""
import logging
from types import SimpleNamespace

import pytest
import torch

from kvtier.sglang import KVTierHiCacheStorage

PAGE, WIDTH, PAGES = 64, 96, 16


def storage_config(socket, tp_rank=0, tp_size=1, mla=False, **extra):
    return SimpleNamespace(tp_rank=tp_rank, tp_size=tp_size, pp_rank=0, pp_size=1, attn_cp_rank=0, attn_cp_size=1,
                           is_mla_model=mla, enable_storage_metrics=False, is_page_first_layout=False,
                           model_name="test/sglang-model",
                           extra_config={"backend_name": "kvtier", "module_path": "kvtier.sglang",
                                         "class_name": "KVTierHiCacheStorage", "kvtier_socket": socket,
                                         "kvtier_retry_interval_s": 0.2, **extra})


class HostPool:
    """Stand-in for SGLang's HostKVCache: token-slot indexed, page-sized flat pages."""

    def __init__(self, seed):
        g = torch.Generator().manual_seed(seed)
        self.page_size, self.dtype, self.layout = PAGE, torch.bfloat16, "layer_first"
        self.data = torch.randn(PAGES * PAGE, WIDTH, generator=g).to(torch.bfloat16)

    def get_data_page(self, index, flat=True):
        return self.data[index:index + PAGE].flatten()

    def get_dummy_flat_data_page(self):
        return torch.zeros(PAGE * WIDTH, dtype=torch.bfloat16)

    def set_from_flat_data_page(self, index, data_page):
        self.data[index:index + PAGE] = data_page.view(PAGE, WIDTH)


def backend(socket, pool=None, **kw):
    # SGLang's dynamic loader calls backend_class(storage_config, kwargs)
    b = KVTierHiCacheStorage(storage_config(socket, **kw), {})
    if pool is not None:
        b.register_mem_pool_host(pool)
    return b


def test_zero_copy_v1_between_two_instances(daemon):
    src, dst = HostPool(1), HostPool(2)
    a, b = backend(daemon.socket, src), backend(daemon.socket, dst)
    keys = [f"hash-{i:04x}" for i in range(4)]
    host = torch.arange(2 * PAGE, 6 * PAGE)  # pages 2..5 of the source pool
    assert a.batch_set_v1(keys, host) == [True] * 4
    assert b.batch_exists(keys + ["missing"]) == 4
    assert b.batch_exists(["missing"] + keys) == 0
    into = torch.arange(8 * PAGE, 12 * PAGE)
    assert b.batch_get_v1(keys, into) == [True] * 4
    assert torch.equal(dst.data[8 * PAGE:12 * PAGE], src.data[2 * PAGE:6 * PAGE])
    assert b.batch_get_v1(["hash-0000", "nope", "hash-0002"], torch.arange(0, 3 * PAGE)) == [True, False, False]


def test_legacy_get_set_exists(daemon):
    pool = HostPool(3)
    s = backend(daemon.socket, pool)
    page = pool.get_data_page(0)
    assert s.set("k1", page) is True
    assert s.exists("k1") and not s.exists("k2")
    target = pool.get_dummy_flat_data_page()
    assert s.get("k1", target) is target and torch.equal(target, page)
    assert s.get("k2", pool.get_dummy_flat_data_page()) is None
    assert s.batch_set(["k3", "k4"], [pool.get_data_page(PAGE), pool.get_data_page(2 * PAGE)]) is True
    got = s.batch_get(["k3", "k4", "k5"], [pool.get_dummy_flat_data_page() for _ in range(3)])
    assert torch.equal(got[1], pool.get_data_page(2 * PAGE)) and got[2] is None
    wrong_size = torch.zeros(10, dtype=torch.bfloat16)
    assert s.get("k1", wrong_size) is None


def test_tp_ranks_are_separate_namespaces_except_mla(daemon):
    pool = HostPool(4)
    r0, r1 = backend(daemon.socket, pool, tp_rank=0, tp_size=2), backend(daemon.socket, pool, tp_rank=1, tp_size=2)
    r0.set("page", pool.get_data_page(0))
    assert r1.exists("page") is False
    m0 = backend(daemon.socket, pool, tp_rank=0, tp_size=2, mla=True)
    m1 = backend(daemon.socket, pool, tp_rank=1, tp_size=2, mla=True)
    m0.set("page", pool.get_data_page(0))
    assert m1.exists("page") is True


def test_daemon_absent_is_a_miss_never_an_exception(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="kvtier")
    pool = HostPool(5)
    s = backend(str(tmp_path / "absent.sock"), pool)
    assert s.batch_exists(["a", "b"]) == 0
    assert s.get("a", pool.get_dummy_flat_data_page()) is None
    assert s.set("a", pool.get_data_page(0)) is False
    assert s.batch_set_v1(["a"], torch.arange(PAGE)) == [False]
    assert s.batch_get_v1(["a"], torch.arange(PAGE)) == [False]
    assert len([r for r in caplog.records if "unavailable" in r.message]) == 1


def test_v2_side_pools_of_hybrid_models(daemon):
    """KV pages through v1, a Mamba-like side pool through the v2 calls."""
    kv_a, kv_b, side_a, side_b = HostPool(6), HostPool(7), HostPool(8), HostPool(9)
    a, b = backend(daemon.socket, kv_a), backend(daemon.socket, kv_b)
    a.register_mem_host_pool_v2(side_a, "mamba")
    b.register_mem_host_pool_v2(side_b, "mamba")
    keys = [f"h{i}" for i in range(4)]
    idx = torch.arange(0, 4 * PAGE)
    assert a.batch_set_v1(keys, idx) == [True] * 4
    last = SimpleNamespace(name="mamba", keys=keys[-1:], host_indices=torch.arange(3 * PAGE, 4 * PAGE),
                           hit_policy="trailing_pages")
    assert a.batch_set_v2([last]) == {"mamba": [True]}
    res = b.batch_exists_v2(keys, [SimpleNamespace(name="mamba", keys=keys[-1:], hit_policy="trailing_pages")])
    assert (res.kv_hit_pages, res.extra_pool_hit_pages) == (4, {"kv": 4, "mamba": 4})
    res = b.batch_exists_v2(keys, [SimpleNamespace(name="mamba", keys=keys, hit_policy="all_pages")])
    assert res.kv_hit_pages == 0
    got = b.batch_get_v2([SimpleNamespace(name="mamba", keys=keys[-1:],
                                          host_indices=torch.arange(5 * PAGE, 6 * PAGE))])
    assert got == {"mamba": [True]}
    assert torch.equal(side_b.data[5 * PAGE:6 * PAGE], side_a.data[3 * PAGE:4 * PAGE])
