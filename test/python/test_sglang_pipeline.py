"""Block-form batches in pieces (block_form.py): the daemon copies one piece while the backend
copies another. Against real kvtierd processes, real shm and torch tensors: pieces of one
page in every layout, byte-exact across processes; a piece that fails in the middle of a batch
ends the run and no later piece reaches the host pool; scatter's two paths (copy_ per run of
consecutive pages, one index_copy_ for scattered small pages) write the same bytes as the
pool's own set_from_flat_data_page; a bad kvtier_piece_bytes is a coded error."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from kvtier import constants
from kvtier.errors import ConfigError
from kvtier.refengine import sglang_pools as pools
from kvtier.refengine.drain import wait_write_behind
from kvtier.sglang import KVTierHiCacheStorage
from kvtier.sglang.block_form import page_view, scatter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sglang_pools import host_indices, make_pool, storage_config  # noqa: E402
from test_sglang_pages import LAYOUTS, backend, same_page, store_in_child  # noqa: E402


@pytest.mark.parametrize("kind,layout", LAYOUTS)
def test_pieces_of_one_page_store_and_load_byte_exact_in_another_process(daemon, kind, layout):
    keys = [f"piece-{kind}-{layout}-{i}" for i in range(6)]
    stored_from, loaded_into = [1, 3, 4, 6, 7, 0], [5, 6, 7, 0, 2, 3]
    child = store_in_child(daemon.socket, kind, layout, 21, keys, stored_from, kvtier_piece_bytes=1)
    assert child["ok"] == [True] * 6 and child["mode"] == "blocks"
    assert child["stats"]["block_form_batches"] == 6   # one Store per one-page piece
    src, dst = make_pool(kind, layout, 21), make_pool(kind, layout, zero=True)
    b = backend(daemon.socket, dst, kind, kvtier_piece_bytes=1)
    assert b.batch_get_v1(keys, host_indices(loaded_into)) == [True] * 6
    assert b.get_stats()["block_form_batches"] == 6      # one Retrieve per piece
    for s, d in zip(stored_from, loaded_into):
        assert same_page(src, s, dst, d)
    untouched = make_pool(kind, layout, zero=True)
    for p in (1, 4):
        assert same_page(untouched, p, dst, p)


def test_a_piece_failing_mid_batch_ends_the_run_and_later_pieces_stay_out_of_the_pool(daemon_factory, valkey):
    """Page 3 of 6 is corrupted in Valkey. Daemon B (host tier empty) finds all six there, so
    the Lookup leases six; the Retrieve of piece 3 fails its checksum while pieces 4 and 5 land
    in the staging slots. Only pages 0-2 may be reported and written into the host pool."""
    url = f"remote_url: valkey://127.0.0.1:{valkey}\n"
    da, db = daemon_factory(url), daemon_factory(url)
    src = make_pool("mha", "page_first", 22)
    a = backend(da.socket, src)
    keys = [f"mid-{i}" for i in range(6)]
    cli = ["valkey-cli", "-p", str(valkey)]

    def valkey_keys() -> set[str]:
        out = subprocess.run(cli + ["--scan", "--pattern", "kvtier:*"], capture_output=True, text=True, timeout=10)
        return set(out.stdout.split())

    assert a.batch_set_v1(keys[:3], host_indices([0, 1, 2])) == [True] * 3
    wait_write_behind(da.socket, "daemon A", timeout=20)
    before = valkey_keys()
    assert a.batch_set_v1(keys[3:4], host_indices([3])) == [True]
    wait_write_behind(da.socket, "daemon A", timeout=20)
    third = valkey_keys() - before
    assert len(third) == 1, third
    victim = third.pop()
    assert a.batch_set_v1(keys[4:], host_indices([4, 5])) == [True] * 2
    wait_write_behind(da.socket, "daemon A", timeout=20)
    size = int(subprocess.run(cli + ["strlen", victim], capture_output=True, text=True, timeout=10).stdout)
    subprocess.run(cli + ["setrange", victim, str(size - 100), "CORRUPTED"], check=True, capture_output=True, timeout=10)

    dst = make_pool("mha", "page_first", zero=True)
    b = backend(db.socket, dst, kvtier_piece_bytes=1)
    deadline = time.monotonic() + 20
    while b.batch_exists(keys) < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert b.batch_exists(keys) == 6   # the corruption shows only when the bytes are read
    assert b.batch_get_v1(keys, host_indices([0, 1, 2, 3, 4, 5])) == [True, True, True, False, False, False]
    for p in (0, 1, 2):
        assert same_page(src, p, dst, p)
    zero = make_pool("mha", "page_first", zero=True)
    for p in (3, 4, 5):
        assert same_page(zero, p, dst, p), f"page {p} was written although it is reported not loaded"
    assert b.get_stats()["pages_loaded"] == 3


# 1 MiB pages (2 x 64 tokens x 8 layers x 4 heads x 128 dim, bf16): scatter copies runs of
# consecutive pages with copy_ at this size, and keeps one index_copy_ for the tests' 3 KiB pages.
BIG = pools.PoolDims(layers=8, heads=4, dim=128, mla_dim=512, page=64, pages=8)
SMALL = pools.PoolDims(layers=3, heads=2, dim=8, mla_dim=24, page=16, pages=8)


@pytest.mark.parametrize("dims", [BIG, SMALL], ids=["1MiB-pages", "small-pages"])
@pytest.mark.parametrize("kind,layout", LAYOUTS)
def test_scatter_writes_what_the_pools_own_setter_writes(dims, kind, layout):
    src = pools.make_pool(kind, layout, dims, seed=23)
    mine, theirs = pools.make_pool(kind, layout, dims, zero=True), pools.make_pool(kind, layout, dims, zero=True)
    view = page_view(mine)
    assert view is not None
    pages = torch.tensor([6, 7, 0, 3, 4, 5])       # runs 6-7, 0, 3-5
    flat = torch.stack([src.get_data_page(int(p) * dims.page, flat=True).reshape(-1) for p in range(6)])
    scatter(mine, view, pages, flat)
    for j, p in enumerate(pages.tolist()):
        theirs.set_from_flat_data_page(p * dims.page, flat[j])
    assert torch.equal(mine.kv_buffer.view(torch.uint8), theirs.kv_buffer.view(torch.uint8))
    assert not torch.equal(mine.kv_buffer.view(torch.uint8), torch.zeros_like(mine.kv_buffer.view(torch.uint8)))


@pytest.mark.parametrize("bad", [0, -1, "16MiB", True, 1.5])
def test_a_bad_piece_size_is_a_config_error(daemon, bad):
    with pytest.raises(ConfigError) as e:
        KVTierHiCacheStorage(storage_config(daemon.socket, kvtier_piece_bytes=bad), {})
    assert e.value.code == constants.KVT_CONFIG and "kvtier_piece_bytes" in str(e.value)
