"""The SGLang host-pool stand-ins (kvtier/refengine/sglang_pools.py) at the tests'
small size. Also a child-process entry point: `python3 sglang_pools.py <json>`
stores pages from a pool built with the same seed, for tests that load in
another process.
"""
from __future__ import annotations

import json
import sys

import torch

from kvtier.refengine import sglang_pools as pools
from kvtier.refengine.sglang_pools import storage_config  # noqa: F401  (the tests import it from here)

LAYERS, HEADS, DIM, MLA_DIM, PAGE, PAGES = 3, 2, 8, 24, 16, 8
DIMS = pools.PoolDims(LAYERS, HEADS, DIM, MLA_DIM, PAGE, PAGES)


def make_pool(kind: str, layout: str, seed: int = 0, zero: bool = False):
    return pools.make_pool(kind, layout, DIMS, seed, zero)


def host_indices(pages: list[int]) -> torch.Tensor:
    return pools.host_indices(pages, PAGE)


def main(spec: dict) -> None:
    """Stores spec["pages"] of a pool (kind, layout, seed) under spec["keys"]; prints the outcome."""
    from kvtier.sglang import KVTierHiCacheStorage

    pool = make_pool(spec["kind"], spec["layout"], spec["seed"])
    b = KVTierHiCacheStorage(storage_config(spec["socket"], mla=spec["kind"] == "mla", **spec.get("cfg", {}),
                                            **spec.get("extra", {})), {})
    b.register_mem_pool_host(pool)
    ok = b.batch_set_v1(spec["keys"], host_indices(spec["pages"]))
    print(json.dumps({"ok": ok, "mode": b.transfer_mode, "stats": {k: v for k, v in b.get_stats().items()
                                                                  if k != "daemon"}}))
    b.close()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
