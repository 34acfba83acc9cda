"""Stand-ins for SGLang's host KV pools, shaped as upstream's MHATokenToKVPoolHost
and MLATokenToKVPoolHost lay out kv_buffer (sgl-project/sglang,
python/sglang/srt/mem_cache/memory_pool_host.py and pool_host/, see
docs/integrations.md), with the same get_data_page / set_from_flat_data_page
page order. Sized by a PoolDims: small in the tests (test/python/sglang_pools.py),
a real model's in `kvtier bench throughput --tier host --source sglang`.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch


@dataclass(frozen=True)
class PoolDims:
    layers: int
    heads: int
    dim: int
    mla_dim: int
    page: int
    pages: int


class MHAPool:
    """kv_buffer: layer_first (2, L, size, H, D), page_first (2, size, L, H, D),
    page_first_direct (2, pages, L, page, H, D), page_head (2, pages, H, page, L, D)
    (head-major within a page, for heterogeneous-TP zero copy: a rank's heads are one
    contiguous run per K and V)."""

    def __init__(self, layout: str, dims: PoolDims, seed: int = 0, zero: bool = False) -> None:
        self.layout, self.page_size, self.dtype, self.layer_num, self.dims = layout, dims.page, torch.bfloat16, dims.layers, dims
        L, H, D, P = dims.layers, dims.heads, dims.dim, dims.page
        size = P * dims.pages
        shape = {"layer_first": (2, L, size, H, D), "page_first": (2, size, L, H, D),
                 "page_first_direct": (2, dims.pages, L, P, H, D), "page_head": (2, dims.pages, H, P, L, D)}[layout]
        g = torch.Generator().manual_seed(seed)
        self.kv_buffer = torch.zeros(shape, dtype=self.dtype) if zero else torch.randn(shape, generator=g).to(self.dtype)

    def get_data_page(self, index: int, flat: bool = True) -> torch.Tensor:
        P = self.page_size
        if self.layout == "layer_first":
            d = self.kv_buffer[:, :, index:index + P]
        elif self.layout == "page_first":
            d = self.kv_buffer[:, index:index + P]
        else:  # page_first_direct, page_head: one page index
            r = index // P
            d = self.kv_buffer[:, r:r + 1]
        return d.flatten() if flat else d

    def get_dummy_flat_data_page(self) -> torch.Tensor:
        d = self.dims
        return torch.zeros(2 * d.layers * d.page * d.heads * d.dim, dtype=self.dtype)

    def set_from_flat_data_page(self, index: int, data_page: torch.Tensor) -> None:
        d, P = self.dims, self.page_size
        if self.layout == "layer_first":
            self.kv_buffer[:, :, index:index + P] = data_page.reshape(2, d.layers, P, d.heads, d.dim)
        elif self.layout == "page_first":
            self.kv_buffer[:, index:index + P] = data_page.reshape(2, P, d.layers, d.heads, d.dim)
        elif self.layout == "page_first_direct":
            r = index // P
            self.kv_buffer[:, r:r + 1] = data_page.reshape(2, 1, d.layers, P, d.heads, d.dim)
        else:
            r = index // P
            self.kv_buffer[:, r:r + 1] = data_page.reshape(2, 1, d.heads, P, d.layers, d.dim)


class MLAPool:
    """kv_buffer: layer_first (L, size, 1, D), page_first (size, L, 1, D),
    page_first_direct (pages, L, page, 1, D)."""

    def __init__(self, layout: str, dims: PoolDims, seed: int = 0, zero: bool = False) -> None:
        self.layout, self.page_size, self.dtype, self.layer_num, self.dims = layout, dims.page, torch.bfloat16, dims.layers, dims
        self.kv_lora_rank, self.qk_rope_head_dim = dims.mla_dim - 8, 8
        L, D, P = dims.layers, dims.mla_dim, dims.page
        size = P * dims.pages
        shape = {"layer_first": (L, size, 1, D), "page_first": (size, L, 1, D),
                 "page_first_direct": (dims.pages, L, P, 1, D)}[layout]
        g = torch.Generator().manual_seed(seed)
        self.kv_buffer = torch.zeros(shape, dtype=self.dtype) if zero else torch.randn(shape, generator=g).to(self.dtype)

    def get_data_page(self, index: int, flat: bool = True) -> torch.Tensor:
        P = self.page_size
        if self.layout == "layer_first":
            d = self.kv_buffer[:, index:index + P]
        elif self.layout == "page_first":
            d = self.kv_buffer[index:index + P]
        else:
            r = index // P
            d = self.kv_buffer[r:r + 1]
        return d.flatten() if flat else d

    def get_dummy_flat_data_page(self) -> torch.Tensor:
        d = self.dims
        return torch.zeros(d.layers * d.page * d.mla_dim, dtype=self.dtype)

    def set_from_flat_data_page(self, index: int, data_page: torch.Tensor) -> None:
        d, P = self.dims, self.page_size
        if self.layout == "layer_first":
            self.kv_buffer[:, index:index + P] = data_page.reshape(d.layers, P, 1, d.mla_dim)
        elif self.layout == "page_first":
            self.kv_buffer[index:index + P] = data_page.reshape(P, d.layers, 1, d.mla_dim)
        else:
            r = index // P
            self.kv_buffer[r:r + 1] = data_page.reshape(1, d.layers, P, 1, d.mla_dim)


def make_pool(kind: str, layout: str, dims: PoolDims, seed: int = 0, zero: bool = False):
    return (MLAPool if kind == "mla" else MHAPool)(layout, dims, seed, zero)


def storage_config(socket: str, tp_rank: int = 0, tp_size: int = 1, mla: bool = False, cp_rank: int = 0,
                   cp_size: int = 1, model_name: str = "test/sglang-pages", **extra):
    """What SGLang's HiCacheStorageConfig carries, with kvtier's extra_config."""
    return SimpleNamespace(tp_rank=tp_rank, tp_size=tp_size, pp_rank=0, pp_size=1, attn_cp_rank=cp_rank,
                           attn_cp_size=cp_size, is_mla_model=mla, enable_storage_metrics=False,
                           is_page_first_layout=False, model_name=model_name,
                           extra_config={"backend_name": "kvtier", "module_path": "kvtier.sglang",
                                         "class_name": "KVTierHiCacheStorage", "kvtier_socket": socket,
                                         "kvtier_retry_interval_s": 0.2, **extra})


def host_indices(pages: list[int], page: int) -> torch.Tensor:
    """The token indices of host pages, as SGLang's HiCache controller passes them."""
    return torch.cat([torch.arange(p * page, (p + 1) * page) for p in pages])
