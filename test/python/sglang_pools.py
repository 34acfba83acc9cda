"""Stand-ins for SGLang's host KV pools, shaped as upstream's MHATokenToKVPoolHost
and MLATokenToKVPoolHost lay out kv_buffer (sgl-project/sglang,
python/sglang/srt/mem_cache/memory_pool_host.py and pool_host/, see
docs/integrations.md), with the same get_data_page / set_from_flat_data_page
page order. Also a child-process entry point: `python3 sglang_pools.py
<json>` stores pages from a pool built with the same seed, for tests that
load in another process.
"""
from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import torch

LAYERS, HEADS, DIM, MLA_DIM, PAGE, PAGES = 3, 2, 8, 24, 16, 8


class MHAPool:
    """kv_buffer: layer_first (2, L, size, H, D), page_first (2, size, L, H, D),
    page_first_direct (2, pages, L, page, H, D)."""

    def __init__(self, layout: str, seed: int = 0, zero: bool = False) -> None:
        self.layout, self.page_size, self.dtype, self.layer_num = layout, PAGE, torch.bfloat16, LAYERS
        size = PAGE * PAGES
        shape = {"layer_first": (2, LAYERS, size, HEADS, DIM), "page_first": (2, size, LAYERS, HEADS, DIM),
                 "page_first_direct": (2, PAGES, LAYERS, PAGE, HEADS, DIM)}[layout]
        g = torch.Generator().manual_seed(seed)
        self.kv_buffer = torch.zeros(shape, dtype=self.dtype) if zero else torch.randn(shape, generator=g).to(self.dtype)

    def get_data_page(self, index: int, flat: bool = True) -> torch.Tensor:
        if self.layout == "layer_first":
            d = self.kv_buffer[:, :, index:index + PAGE]
        elif self.layout == "page_first":
            d = self.kv_buffer[:, index:index + PAGE]
        else:
            r = index // PAGE
            d = self.kv_buffer[:, r:r + 1]
        return d.flatten() if flat else d

    def get_dummy_flat_data_page(self) -> torch.Tensor:
        return torch.zeros(2 * LAYERS * PAGE * HEADS * DIM, dtype=self.dtype)

    def set_from_flat_data_page(self, index: int, data_page: torch.Tensor) -> None:
        if self.layout == "layer_first":
            self.kv_buffer[:, :, index:index + PAGE] = data_page.reshape(2, LAYERS, PAGE, HEADS, DIM)
        elif self.layout == "page_first":
            self.kv_buffer[:, index:index + PAGE] = data_page.reshape(2, PAGE, LAYERS, HEADS, DIM)
        else:
            r = index // PAGE
            self.kv_buffer[:, r:r + 1] = data_page.reshape(2, 1, LAYERS, PAGE, HEADS, DIM)


class MLAPool:
    """kv_buffer: layer_first (L, size, 1, D), page_first (size, L, 1, D),
    page_first_direct (pages, L, page, 1, D)."""

    def __init__(self, layout: str, seed: int = 0, zero: bool = False) -> None:
        self.layout, self.page_size, self.dtype, self.layer_num = layout, PAGE, torch.bfloat16, LAYERS
        self.kv_lora_rank, self.qk_rope_head_dim = MLA_DIM - 8, 8
        size = PAGE * PAGES
        shape = {"layer_first": (LAYERS, size, 1, MLA_DIM), "page_first": (size, LAYERS, 1, MLA_DIM),
                 "page_first_direct": (PAGES, LAYERS, PAGE, 1, MLA_DIM)}[layout]
        g = torch.Generator().manual_seed(seed)
        self.kv_buffer = torch.zeros(shape, dtype=self.dtype) if zero else torch.randn(shape, generator=g).to(self.dtype)

    def get_data_page(self, index: int, flat: bool = True) -> torch.Tensor:
        if self.layout == "layer_first":
            d = self.kv_buffer[:, index:index + PAGE]
        elif self.layout == "page_first":
            d = self.kv_buffer[index:index + PAGE]
        else:
            r = index // PAGE
            d = self.kv_buffer[r:r + 1]
        return d.flatten() if flat else d

    def get_dummy_flat_data_page(self) -> torch.Tensor:
        return torch.zeros(LAYERS * PAGE * MLA_DIM, dtype=self.dtype)

    def set_from_flat_data_page(self, index: int, data_page: torch.Tensor) -> None:
        if self.layout == "layer_first":
            self.kv_buffer[:, index:index + PAGE] = data_page.reshape(LAYERS, PAGE, 1, MLA_DIM)
        elif self.layout == "page_first":
            self.kv_buffer[index:index + PAGE] = data_page.reshape(PAGE, LAYERS, 1, MLA_DIM)
        else:
            r = index // PAGE
            self.kv_buffer[r:r + 1] = data_page.reshape(1, LAYERS, PAGE, 1, MLA_DIM)


def make_pool(kind: str, layout: str, seed: int = 0, zero: bool = False):
    return (MLAPool if kind == "mla" else MHAPool)(layout, seed, zero)


def storage_config(socket: str, tp_rank: int = 0, tp_size: int = 1, mla: bool = False, cp_rank: int = 0,
                   cp_size: int = 1, **extra):
    return SimpleNamespace(tp_rank=tp_rank, tp_size=tp_size, pp_rank=0, pp_size=1, attn_cp_rank=cp_rank,
                           attn_cp_size=cp_size, is_mla_model=mla, enable_storage_metrics=False,
                           is_page_first_layout=False, model_name="test/sglang-pages",
                           extra_config={"backend_name": "kvtier", "module_path": "kvtier.sglang",
                                         "class_name": "KVTierHiCacheStorage", "kvtier_socket": socket,
                                         "kvtier_retry_interval_s": 0.2, **extra})


def host_indices(pages: list[int]) -> torch.Tensor:
    return torch.cat([torch.arange(p * PAGE, (p + 1) * PAGE) for p in pages])


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
