"""`kvtier bench throughput --tier host --source sglang`'s Python side.

Run by bench/throughput-sglang.ts with /usr/bin/python3 against the daemon it
started: argv = socket path, pages per batch, rounds. A Llama-3.1-8B-shaped
SGLang host pool (page_first MHA, bf16, 64-token pages: 8 MiB a page) goes
through KVTierHiCacheStorage's batch_set_v1 / batch_get_v1 in both forms:
block (pages through the registered shm staging region, ids on the socket)
and inline (page bytes in the socket frames, kvtier_staging_pages: 0).

The reference makes the copies the block form cannot avoid, with the same
bytes in the same run: host pool -> staging (one index_select) and staging ->
another buffer (the daemon's slab), and back. Every page loaded is compared
with the page stored (outside the timed part). Prints one JSON object.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integrations", "python"))

import torch  # noqa: E402

from kvtier.refengine.sglang_pools import PoolDims, host_indices, make_pool, storage_config  # noqa: E402
from kvtier.sglang import KVTierHiCacheStorage  # noqa: E402
from kvtier.sglang.block_form import page_view  # noqa: E402

PAGE = 64
LAYOUT = "page_first"


def backend(sock, pool, **extra):
    b = KVTierHiCacheStorage(storage_config(sock, model_name="bench/llama-3.1-8b", **extra), {})
    b.register_mem_pool_host(pool)
    return b


def run_form(sock, form, src, dst, pages, rounds, page_bytes):
    staging = pages if form == "block" else 0
    a, b = backend(sock, src, kvtier_staging_pages=staging), backend(sock, dst, kvtier_staging_pages=staging)
    idx = host_indices(list(range(pages)), PAGE)
    store_s, load_s, keys = [], [], []
    for r in range(rounds + 1):  # round 0 warms up (first RegisterKv, page faults of the staging region)
        keys = [f"{form}-{r}-{i}" for i in range(pages)]
        t = time.perf_counter()
        ok = a.batch_set_v1(keys, idx)
        if r > 0:
            store_s.append(time.perf_counter() - t)
        if ok != [True] * pages:
            raise SystemExit(f"{form}: the daemon stored {sum(ok)} of {pages} pages (pool too small?)")
    for r in range(rounds + 1):
        dst.kv_buffer.zero_()
        t = time.perf_counter()
        ok = b.batch_get_v1(keys, idx)
        if r > 0:
            load_s.append(time.perf_counter() - t)
        if ok != [True] * pages:
            raise SystemExit(f"{form}: loaded {sum(ok)} of {pages} pages")
    verified = torch.equal(src.kv_buffer.view(torch.uint8), dst.kv_buffer.view(torch.uint8))
    mode = (a.transfer_mode, b.transfer_mode)
    a.close()
    b.close()
    total = pages * page_bytes
    return {"form": form, "transfer_mode": mode[0], "store_gbps": round(total / min(store_s) / 1e9, 3),
            "retrieve_gbps": round(total / min(load_s) / 1e9, 3), "verified": verified}


def reference(src, dst, pages, rounds, page_bytes):
    """host pool -> staging -> slab (store) and slab -> staging -> host pool (retrieve), as block form copies."""
    sv, dv = page_view(src), page_view(dst)
    ids = torch.arange(pages)
    staging = torch.empty((pages,) + tuple(sv.shape[1:]), dtype=sv.dtype)
    slab = torch.empty(pages * page_bytes, dtype=torch.uint8)
    store_s, load_s = [], []
    for r in range(rounds + 1):
        t = time.perf_counter()
        torch.index_select(sv, 0, ids, out=staging)
        slab.copy_(staging.reshape(-1).view(torch.uint8))
        if r > 0:
            store_s.append(time.perf_counter() - t)
    for r in range(rounds + 1):
        t = time.perf_counter()
        staging.reshape(-1).view(torch.uint8).copy_(slab)
        dv.index_copy_(0, ids, staging)
        if r > 0:
            load_s.append(time.perf_counter() - t)
    total = pages * page_bytes
    return {"what": f"torch: index_select of {pages} pages into a staging tensor + copy_ into a second buffer, and back "
                    f"(the two copies of the block form), {torch.get_num_threads()} torch threads",
            "store_gbps": round(total / min(store_s) / 1e9, 3), "retrieve_gbps": round(total / min(load_s) / 1e9, 3)}


def main() -> None:
    sock, pages, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    dims = PoolDims(layers=32, heads=8, dim=128, mla_dim=576, page=PAGE, pages=pages)
    src, dst = make_pool("mha", LAYOUT, dims, seed=1), make_pool("mha", LAYOUT, dims, zero=True)
    page_bytes = src.get_dummy_flat_data_page().numel() * 2
    ref = reference(src, dst, pages, rounds, page_bytes)
    rows = [run_form(sock, form, src, dst, pages, rounds, page_bytes) for form in ("block", "inline")]
    block, inline = rows
    print(json.dumps({
        "model": "llama-3.1-8b: 32 layers x 8 kv heads x 128 dim, bf16", "layout": f"mha {LAYOUT}", "page_tokens": PAGE,
        "page_bytes": page_bytes, "pages_per_batch": pages, "rounds": rounds, "rows": rows, "reference": ref,
        "ratio": {"block_vs_reference": {"store": round(block["store_gbps"] / ref["store_gbps"], 2),
                                         "retrieve": round(block["retrieve_gbps"] / ref["retrieve_gbps"], 2)},
                  "block_vs_inline": {"store": round(block["store_gbps"] / inline["store_gbps"], 2),
                                      "retrieve": round(block["retrieve_gbps"] / inline["retrieve_gbps"], 2)}},
    }))


if __name__ == "__main__":
    main()
