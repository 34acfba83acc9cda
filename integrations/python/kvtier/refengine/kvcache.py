"""The engine's paged KV cache, in the tensor layouts vLLM's attention backends use.

Every layout is allocated from kvtier's ShmAllocator on CPU (so kvtierd can map
it by path) or with torch.empty on CUDA (kvtier sends the IPC handle). The
model never sees the layout: it gets per-layer K and V views of shape
(num_blocks, block_size, kv_heads, head_dim). The connector gets the tensors
vLLM would hand to register_kv_caches.

  flash        per layer (2, num_blocks, block, kv_heads, head_dim)   FlashAttention
  flashinfer   per layer (num_blocks, 2, block, kv_heads, head_dim)   FlashInfer
  mla          per layer (num_blocks, block, 2*kv_heads*head_dim)     one plane per layer, like
               vLLM's MLA cache. It is "MLA-like" only in shape: the plane holds K and V
               concatenated, not a compressed latent, so it exercises the connector's
               single-plane (mla-NC-x1) path, not MLA's math.
  layer_major  one buffer (layers, 2, num_blocks, block, kv_heads, head_dim), each layer a
               view into it (one region, planes at offsets). Layer-major: a block of one
               layer is contiguous, a block across layers is not (this layout was named
               `cross` before; it is not vLLM's cross-layer layout)
  cross_layer  vLLM's cross-layer blocks (prefer_cross_layer_blocks), allocated as vLLM's
               allocate_uniform_kv_caches does for FlashAttention's (2, num_blocks, block,
               kv_heads, head_dim) with stride order (2, 0, 1, 3, 4, 5): memory
               (num_blocks, layers, 2, block, kv_heads, head_dim), block-major, one block
               contiguous across every layer. The connector gets that physical tensor and
               FlashAttentionCrossLayer (its stride order) through
               register_cross_layers_kv_cache, as vLLM's model runner hands them
"""
from __future__ import annotations

import weakref
from typing import Any, Optional

import torch

from ..shm import ShmAllocator
from .model import KVPlanes, ModelConfig

LAYOUTS = ("flash", "flashinfer", "mla", "layer_major", "cross_layer")


class FlashAttentionCrossLayer:
    """The attention backend vLLM passes beside the cross-layer tensor: FlashAttention's stride
    order with the layers dim, logical (layers, 2, num_blocks, block, kv_heads, head_dim) to the
    memory order (num_blocks, layers, 2, block, kv_heads, head_dim), NHD cache layout."""

    @staticmethod
    def get_kv_cache_stride_order(include_num_layers_dimension: bool = False) -> tuple[int, ...]:
        return (2, 0, 1, 3, 4, 5) if include_num_layers_dimension else (0, 1, 2, 3, 4)


def layer_name(i: int) -> str:
    return f"model.layers.{i}.self_attn.attn"


class PagedKVCache:
    def __init__(self, cfg: ModelConfig, layout: str, num_blocks: int, block_size: int, dtype: torch.dtype,
                 device: Any = "cpu", alloc: Optional[ShmAllocator] = None, fill_seed: int = 99) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.layout, self.num_blocks, self.block_size = layout, num_blocks, block_size
        dev = torch.device(device)
        self._own_alloc = alloc is None and dev.type == "cpu"
        self.alloc = ShmAllocator(prefix="kvtier-refengine") if self._own_alloc else alloc
        if self._own_alloc:  # unlink the /dev/shm files even if close() is never called
            weakref.finalize(self, self.alloc.close)

        def empty(shape: tuple[int, ...]) -> torch.Tensor:
            if dev.type == "cpu":
                assert self.alloc is not None
                return self.alloc.empty(shape, dtype)
            return torch.empty(shape, dtype=dtype, device=dev)

        L, KH, D, NB, BS = cfg.layers, cfg.kv_heads, cfg.head_dim, num_blocks, block_size
        self.tensors: dict[str, torch.Tensor] = {}
        self.planes: list[KVPlanes] = []
        self.cross_layer_tensor: Optional[torch.Tensor] = None
        if layout == "layer_major":
            buf = empty((L, 2, NB, BS, KH, D))
            self._buffers = [buf]
            for i in range(L):
                self.tensors[layer_name(i)] = buf[i]
                self.planes.append(KVPlanes(buf[i][0], buf[i][1]))
        elif layout == "cross_layer":
            buf = empty((NB, L, 2, BS, KH, D))
            self._buffers = [buf]
            view = buf.permute(1, 2, 0, 3, 4, 5)            # (L, 2, NB, BS, KH, D), strides block-major
            self.cross_layer_tensor = buf                   # vLLM registers the physical tensor
            for i in range(L):
                self.tensors[layer_name(i)] = view[i]
                self.planes.append(KVPlanes(view[i][0], view[i][1]))
        else:
            self._buffers = []
            for i in range(L):
                if layout == "flash":
                    t = empty((2, NB, BS, KH, D))
                    p = KVPlanes(t[0], t[1])
                elif layout == "flashinfer":
                    t = empty((NB, 2, BS, KH, D))
                    p = KVPlanes(t[:, 0], t[:, 1])
                else:  # mla
                    t = empty((NB, BS, 2 * KH * D))
                    p = KVPlanes(t[..., :KH * D].unflatten(-1, (KH, D)), t[..., KH * D:].unflatten(-1, (KH, D)))
                self._buffers.append(t)
                self.tensors[layer_name(i)] = t
                self.planes.append(p)
        # Garbage, not zeros: KV that was neither computed nor loaded must not look right.
        g = torch.Generator().manual_seed(fill_seed)
        for b in self._buffers:
            b.copy_(torch.randn(b.shape, generator=g).to(dtype))

    @property
    def mla(self) -> bool:
        return self.layout == "mla"

    def close(self) -> None:
        if self._own_alloc and self.alloc is not None:
            self.alloc.close()
