"""batch_exists / batch_exists_v2 answer the leading run of pages a load would really get, against
real kvtierd processes and a real valkey-server: SGLang plans its prefetch from that number, so a
page counted but not loadable becomes a prefetch that loads nothing while the prefix is not
computed either. Cases: a gap, a side-pool part missing under all_pages, another TP rank's
side-pool shard, and Valkey-only pages when the daemon measured that recomputing them is faster."""
from __future__ import annotations

import os
import sys
import time
from types import SimpleNamespace

from kvtier.refengine.drain import wait_write_behind

from kvtier.sglang import KVTierHiCacheStorage

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sglang_pools import host_indices, make_pool, storage_config  # noqa: E402


def backend(sock, pool, **extra):
    b = KVTierHiCacheStorage(storage_config(sock, **extra), {})
    b.register_mem_pool_host(pool)
    return b


def test_a_gap_ends_the_run(daemon):
    a = backend(daemon.socket, make_pool("mha", "page_first", 21))
    b = backend(daemon.socket, make_pool("mha", "page_first", zero=True))
    keys = [f"gap-{i}" for i in range(4)]
    assert a.batch_set_v1([keys[0]], host_indices([0])) == [True]
    assert a.batch_set_v1(keys[2:], host_indices([2, 3])) == [True, True]
    assert b.batch_exists(keys) == 1
    assert b.batch_exists_v2(keys, []).kv_hit_pages == 1
    assert b.batch_get_v1(keys, host_indices([4, 5, 6, 7])) == [True, False, False, False]


def test_a_missing_side_pool_part_ends_the_run_under_all_pages(daemon):
    kv_a, kv_b = make_pool("mha", "page_first", 22), make_pool("mha", "page_first", zero=True)
    side_a, side_b = make_pool("mla", "page_first", 23), make_pool("mla", "page_first", zero=True)
    a, b = backend(daemon.socket, kv_a), backend(daemon.socket, kv_b)
    a.register_mem_host_pool_v2(side_a, "swa")
    b.register_mem_host_pool_v2(side_b, "swa")
    keys = [f"side-{i}" for i in range(4)]
    assert a.batch_set_v1(keys, host_indices([0, 1, 2, 3])) == [True] * 4
    for i in (0, 1, 3):   # page 2's SWA part never stored
        t = SimpleNamespace(name="swa", keys=[keys[i]], host_indices=host_indices([i]), hit_policy="all_pages")
        assert a.batch_set_v2([t]) == {"swa": [True]}
    res = b.batch_exists_v2(keys, [SimpleNamespace(name="swa", keys=keys, hit_policy="all_pages")])
    assert (res.kv_hit_pages, res.extra_pool_hit_pages) == (2, {"kv": 4, "swa": 2})


def test_another_ranks_side_pool_shard_does_not_count(daemon):
    """MLA: TP ranks share the KV pages, but a TP-sharded side pool (Mamba states) is per rank:
    rank 1's run ends where its own shard does, whatever rank 0 holds."""
    kv = make_pool("mla", "layer_first", 25)
    side = make_pool("mha", "page_first", 26)
    r0 = backend(daemon.socket, kv, mla=True, tp_rank=0, tp_size=2)
    r1 = backend(daemon.socket, kv, mla=True, tp_rank=1, tp_size=2)
    for r in (r0, r1):
        r.register_mem_host_pool_v2(side, "mamba")
    keys = [f"shard-{i}" for i in range(4)]
    assert r0.batch_set_v1(keys, host_indices([0, 1, 2, 3])) == [True] * 4
    for r, pages in ((r0, [0, 1, 2, 3]), (r1, [0, 1, 3])):   # rank 1 lacks page 2's shard
        for i in pages:
            t = SimpleNamespace(name="mamba", keys=[keys[i]], host_indices=host_indices([i]), hit_policy="all_pages")
            assert r.batch_set_v2([t]) == {"mamba": [True]}
    probe = [SimpleNamespace(name="mamba", keys=keys, hit_policy="all_pages")]
    assert r1.batch_exists(keys) == 4, "the shared KV pages"
    assert r0.batch_exists_v2(keys, probe).kv_hit_pages == 4
    assert r1.batch_exists_v2(keys, probe).kv_hit_pages == 2


def test_valkey_only_pages_slower_than_recompute_are_not_counted(daemon_factory, valkey):
    """The consumer's GPU recomputes 1e9 tokens/s (recompute_tokens_per_s): once one load from
    Valkey has given the daemon a read rate, Valkey-only pages are neither counted by
    batch_exists nor returned by get; pages the first load brought to the host tier still are."""
    url = f"remote_url: valkey://127.0.0.1:{valkey}\n"
    producer, consumer = daemon_factory(url), daemon_factory(url + "recompute_tokens_per_s: 1000000000\n")
    src = make_pool("mha", "page_first", 33)
    a = backend(producer.socket, src)
    first, second = [f"pace-a{i}" for i in range(3)], [f"pace-b{i}" for i in range(3)]
    assert a.batch_set_v1(first + second, host_indices([0, 1, 2, 3, 4, 5])) == [True] * 6
    wait_write_behind(producer.socket, "producer", timeout=20)
    b = backend(consumer.socket, make_pool("mha", "page_first", zero=True))
    assert b.batch_exists(first) == 3                  # no read rate yet: offered
    assert b.batch_get_v1(first, host_indices([0, 1, 2])) == [True] * 3
    deadline = time.monotonic() + 10
    while b.batch_exists(second) != 0 and time.monotonic() < deadline:   # the rate lands after the load
        time.sleep(0.05)
    assert b.batch_exists(second) == 0
    assert b.get(second[0]) is None
    assert b.batch_exists(first) == 3                  # in the host tier now
    assert b.get(first[1]) is not None
