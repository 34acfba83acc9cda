"""Gathers and scatters chunk bytes with torch, for when the daemon cannot copy blocks.

The daemon normally copies blocks itself (block-form Store/Retrieve through
the native addon). When RegisterKv is refused (no addon, or a region it cannot
open), the worker falls back to the inline protocol and copies with this: the
same plane-by-plane chunk layout, built with index_select on strided byte
views of each region, so chunks are interchangeable between the two paths.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .framing import NO_BLOCK
from .layout import KvLayout
from .torch_compat import byte_view


class TorchBlockCopier:
    """index_select/index_copy_ over strided byte views of the planes: chunk <-> blocks."""

    def __init__(self, layout: KvLayout, chunk_size: int) -> None:
        import torch

        self.layout = layout
        self.blocks_per_chunk = chunk_size // layout.block_size
        self.chunk_bytes = layout.chunk_bytes(chunk_size)
        regions = {r.region_id: r for r in layout.regions}
        self._views = []
        for p in layout.planes:
            r = regions[p.region_id]
            base = byte_view(r.anchor)
            self._views.append(torch.as_strided(base, (layout.num_blocks, p.block_bytes),
                                                (p.block_stride, 1), p.offset - r.base_offset))
        self.device = self._views[0].device

    def gather(self, block_ids: Sequence[int]) -> bytes:
        """One chunk's bytes from its blocks (len(block_ids) == blocks_per_chunk)."""
        import torch

        idx = torch.tensor(list(block_ids), dtype=torch.long, device=self.device)
        parts = [v.index_select(0, idx).reshape(-1) for v in self._views]
        return torch.cat(parts).cpu().numpy().tobytes()

    def scatter(self, data: bytes, block_ids: Sequence[int]) -> None:
        """Writes one chunk's bytes into its blocks, skipping NO_BLOCK entries."""
        import torch

        if len(data) != self.chunk_bytes:
            raise ValueError(f"expected a chunk of {self.chunk_bytes} bytes, got {len(data)}")
        keep = [j for j, b in enumerate(block_ids) if b != NO_BLOCK]
        if not keep:
            return
        src = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self.device)
        sel = torch.tensor(keep, dtype=torch.long, device=self.device)
        dst = torch.tensor([block_ids[j] for j in keep], dtype=torch.long, device=self.device)
        pos = 0
        for v in self._views:
            n = self.blocks_per_chunk * v.shape[1]
            part = src[pos:pos + n].view(self.blocks_per_chunk, v.shape[1])
            v.index_copy_(0, dst, part.index_select(0, sel))
            pos += n
