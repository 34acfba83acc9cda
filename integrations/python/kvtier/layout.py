"""KV memory layout derived from the tensors themselves: regions and planes.

A region is one allocation (a /dev/shm file, or the cudaMalloc block behind a
CUDA IPC handle); a plane is a strided array of contiguous blocks inside it:
block b = bytes [offset + b*block_stride, +block_bytes). Nothing here assumes
a backend's shape. For each tensor:

    dims:  [plane dims ...] [block dim] [plane dims ...] [content dims ...]
            e.g. K/V, layers  num_blocks   K/V (flashinfer) block_size, heads, dim

- the block dim is the one of size num_blocks (largest such stride wins);
- content starts at the first dim after it whose size is block_size and must
  be one packed byte range (any dim order: NHD, HND, MLA's (bs, 576));
- every other dim enumerates planes, in row-major order; offsets come from
  strides and data_ptr relative to the region base.

So flash-attn (2,NB,bs,H,D) and flashinfer (NB,2,bs,H,D) both give a K plane
and a V plane per layer with identical chunk bytes, MLA gives one plane, and
layers packed in one buffer give planes with offsets into one region.
`descriptor` names what makes chunk bytes comparable (content order, planes
per layer) and goes into the namespace fingerprint's kv_layout.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from . import proto, shm
from .torch_compat import storage_nbytes, untyped_storage


@dataclass
class Region:
    region_id: int
    size_bytes: int
    device: str
    base_ptr: int               # data_ptr of the storage (the tensor-side base)
    base_offset: int = 0        # bytes from the region (IPC allocation) base to base_ptr
    shm_path: str = ""
    cuda_ipc_handle: bytes = b""
    device_index: int = 0
    anchor: Any = None          # a tensor keeping the storage alive


@dataclass(frozen=True)
class Plane:
    layer: int
    region_id: int
    offset: int                 # bytes from the region base
    block_stride: int
    block_bytes: int


@dataclass
class KvLayout:
    regions: list[Region]
    planes: list[Plane]
    num_blocks: int
    block_size: int
    descriptor: str
    layer_names: list[str] = field(default_factory=list)

    def chunk_bytes(self, chunk_size: int) -> int:
        """Bytes of one full chunk: every plane's blocks, plane by plane."""
        blocks = chunk_size // self.block_size
        return blocks * sum(p.block_bytes for p in self.planes)

    def to_register(self) -> Any:
        """The RegisterKv request for this layout."""
        return proto.RegisterKv(
            regions=[proto.KvRegion(region_id=r.region_id, size_bytes=r.size_bytes, shm_path=r.shm_path,
                                    cuda_ipc_handle=r.cuda_ipc_handle, device_index=r.device_index)
                     for r in self.regions],
            planes=[proto.KvPlane(layer=p.layer, region_id=p.region_id, offset=p.offset,
                                  block_stride=p.block_stride, block_bytes=p.block_bytes)
                    for p in self.planes],
            num_blocks=self.num_blocks, block_size=self.block_size)


class LayoutError(ValueError):
    """The tensors cannot be described as regions and planes."""


def _packed_order(sizes: Sequence[int], strides: Sequence[int]) -> Optional[list[int]]:
    """Dim indices from slowest to fastest if the dims form one packed range, else None."""
    dims = [i for i in range(len(sizes)) if sizes[i] != 1]
    dims.sort(key=lambda i: strides[i], reverse=True)
    expected = 1
    for i in reversed(dims):
        if strides[i] != expected:
            return None
        expected *= sizes[i]
    return dims


def _block_dim(t: Any, num_blocks: int) -> int:
    cands = [i for i, s in enumerate(t.shape) if s == num_blocks]
    if not cands:
        raise LayoutError(f"expected a dim of size num_blocks={num_blocks} in KV tensor of shape "
                          f"{tuple(t.shape)}")
    return max(cands, key=lambda i: t.stride(i))


def _region_for(t: Any, regions: dict[tuple[str, int], Region], allow_unshared: bool) -> Region:
    storage = untyped_storage(t)
    key = (str(t.device), storage.data_ptr())
    if key in regions:
        return regions[key]
    rid = len(regions)
    nbytes = storage_nbytes(storage)
    if t.device.type == "cuda":
        region = _cuda_region(rid, t, storage, nbytes)
    else:
        found = shm.lookup(storage.data_ptr())
        if found is None and not allow_unshared:
            raise LayoutError("CPU KV tensor is not in shared memory: allocate it with "
                              "kvtier.shm.ShmAllocator so kvtierd can map it")
        region = Region(rid, nbytes, str(t.device), storage.data_ptr(),
                        shm_path=found.path if found else "")
    region.anchor = t
    regions[key] = region
    return region


def _cuda_region(rid: int, t: Any, storage: Any, nbytes: int) -> Region:
    """Region for a CUDA storage: the IPC handle of its cudaMalloc block.

    torch's caching allocator sub-allocates, so the handle names the whole
    block and `_share_cuda_` tells where this storage starts inside it.
    """
    shared = storage._share_cuda_()
    device, handle, size, offset = shared[0], shared[1], shared[2], shared[3]
    return Region(rid, int(offset) + int(size or nbytes), str(t.device), storage.data_ptr(),
                  base_offset=int(offset), cuda_ipc_handle=_ipc_mem_handle(bytes(handle)),
                  device_index=int(device))


def _ipc_mem_handle(handle: bytes) -> bytes:
    """The 64-byte cudaIpcMemHandle_t in what `_share_cuda_` returned.

    Older torch returns the bare handle. torch 2.x returns a version byte and
    a kind byte first: b"c" is a cudaMalloc block (the bare handle follows),
    b"e" an expandable segment, which is shared by another scheme (POSIX fds)
    that the daemon does not open.
    """
    if len(handle) == 64:
        return handle
    if len(handle) == 66 and handle[1:2] == b"c":
        return handle[2:]
    if len(handle) >= 2 and handle[1:2] == b"e":
        raise LayoutError("KV tensors live in a torch expandable segment, which has no CUDA IPC handle; "
                          "start the worker with PYTORCH_CUDA_ALLOC_CONF=expandable_segments:False")
    raise LayoutError(f"expected a 64-byte CUDA IPC handle (or torch's 66-byte b'\\x02c' form), "
                      f"got {len(handle)} bytes starting {handle[:2]!r}")


def planes_of(t: Any, layer: int, region: Region, num_blocks: int, block_size: int) -> tuple[list[Plane], str, int]:
    """Planes of one KV tensor; also its content order tag and planes count."""
    bdim = _block_dim(t, num_blocks)
    after = [i for i in range(bdim + 1, t.dim()) if t.shape[i] == block_size]
    if not after:
        raise LayoutError(f"expected a dim of size block_size={block_size} after the block dim "
                          f"{bdim} in KV tensor of shape {tuple(t.shape)}")
    content = list(range(after[0], t.dim()))
    sizes = [t.shape[i] for i in content]
    order = _packed_order(sizes, [t.stride(i) for i in content])
    if order is None:
        whole = _whole_block_plane(t, layer, region, bdim, after[0])
        if whole is not None:
            return whole
        raise LayoutError(f"KV block content dims {tuple(sizes)} with strides "
                          f"{tuple(t.stride(i) for i in content)} are not one packed range")
    es = t.element_size()
    block_bytes = es
    for s in sizes:
        block_bytes *= s
    letters = "NHD" if len(content) == 3 else "NC" if len(content) == 2 else "X" * len(content)
    tag = "".join(letters[i] for i in order) if len(order) == len(content) else letters
    plane_dims = [i for i in range(t.dim()) if i != bdim and i not in content]
    base = (t.data_ptr() - region.base_ptr) + region.base_offset
    planes = []
    for idx in itertools.product(*[range(t.shape[i]) for i in plane_dims]):
        off = base + es * sum(k * t.stride(d) for k, d in zip(idx, plane_dims))
        planes.append(Plane(layer, region.region_id, off, t.stride(bdim) * es, block_bytes))
    return planes, tag, len(planes)


def _whole_block_plane(t: Any, layer: int, region: Region, bdim: int,
                       ndim: int) -> Optional[tuple[list[Plane], str, int]]:
    """One plane per layer when a block's dims are packed together but its content alone is not:
    FlashAttention with K and V packed into the content dim, logical (NB, H, BS, 2*D) over
    physical (NB, BS, H, 2*D), where splitting by head would leave strided pieces. Letters:
    N tokens, C the content dim after them, H the dims before them."""
    dims = [d for d in range(t.dim()) if d != bdim]
    order = _packed_order([t.shape[d] for d in dims], [t.stride(d) for d in dims])
    es = t.element_size()
    block_bytes = es
    for d in dims:
        block_bytes *= t.shape[d]
    if order is None or t.stride(bdim) * es < block_bytes or len(range(ndim, t.dim())) != 2:
        return None
    names = {d: ("N" if d == ndim else "C" if d > ndim else "H") for d in dims}
    tag = "".join(names[dims[i]] for i in order if t.shape[dims[i]] != 1)
    base = (t.data_ptr() - region.base_ptr) + region.base_offset
    return [Plane(layer, region.region_id, base, t.stride(bdim) * es, block_bytes)], tag, 1


def derive_layout(kv_caches: Mapping[str, Any], block_size: int, num_blocks: Optional[int] = None,
                  mla: bool = False, allow_unshared: bool = False) -> KvLayout:
    """Regions and planes of a worker's KV caches, layers in natural name order.

    `num_blocks` defaults to the largest dim of the first tensor before its
    block_size dim (the block count dwarfs the layer and K/V dims there).
    `allow_unshared` accepts CPU tensors outside kvtier shm (inline mode only).
    """
    if not kv_caches:
        raise LayoutError("expected at least one KV cache tensor")
    names = sorted(kv_caches, key=_natural_key)
    first = kv_caches[names[0]]
    if num_blocks is None:
        num_blocks = _guess_num_blocks(first, block_size)
    regions: dict[tuple[str, int], Region] = {}
    planes: list[Plane] = []
    tags: set[tuple[str, int]] = set()
    for layer, name in enumerate(names):
        t = kv_caches[name]
        region = _region_for(t, regions, allow_unshared)
        ps, tag, count = planes_of(t, layer, region, num_blocks, block_size)
        planes.extend(ps)
        tags.add((tag, count))
    if len(tags) != 1:
        raise LayoutError(f"KV tensors of different layouts in one worker: {sorted(tags)}")
    ((tag, count),) = tags
    kind = "mla" if mla else "kv"
    return KvLayout(list(regions.values()), planes, num_blocks, block_size, f"{kind}-{tag}-x{count}", names)


def _guess_num_blocks(t: Any, block_size: int) -> int:
    shape = list(t.shape)
    for i in range(1, len(shape)):
        if shape[i] == block_size:
            return max(shape[:i])
    raise LayoutError(f"expected a dim of size block_size={block_size} in KV tensor of shape {tuple(shape)}")


def default_descriptor(mla: bool, cross_layer: bool = False) -> str:
    """The descriptor vLLM's standard backends produce (what the scheduler assumes).
    cross_layer: vLLM's cross-layer blocks (register_cross_layers_kv_cache) as its
    FlashAttention/FlashInfer and MLA backends lay them out: block-major, then layers,
    then K/V, then the NHD content (MLA: layers, then the NC content)."""
    if cross_layer:
        return "mla-xlLNC-x1" if mla else "kv-xlLKNHD-x1"
    return "mla-NC-x1" if mla else "kv-NHD-x2"


def cross_layer_logical_view(kv_cache: Any, attn_backend: Any = None) -> Any:
    """vLLM's cross-layer tensor with num_layers first, as the layout code reads it.

    vLLM (KVConnectorModelRunnerMixin.allocate_uniform_kv_caches) prepends num_layers to the
    backend's get_kv_cache_shape, permutes that by the backend's
    get_kv_cache_stride_order(include_num_layers_dimension=True) into the physical shape,
    allocates it contiguous and hands *that* tensor to register_cross_layers_kv_cache: blocks
    first, not num_layers first as base.py's docstring says. The inverse permutation gives the
    logical view back (same memory). A tensor that is not contiguous is taken to be a logical
    view already; without a backend stride order the tensor is taken as it is."""
    fn = getattr(attn_backend, "get_kv_cache_stride_order", None)
    if fn is None or not kv_cache.is_contiguous():
        return kv_cache
    try:
        order = tuple(fn(include_num_layers_dimension=True))
    except (TypeError, NotImplementedError):
        return kv_cache
    if sorted(order) != list(range(kv_cache.dim())) or order == tuple(range(kv_cache.dim())):
        return kv_cache
    return kv_cache.permute(*[order.index(i) for i in range(len(order))])


# Probe sizes no two dims of a backend's get_kv_cache_shape share (block size a multiple of 16,
# as FlashAttention requires), so each logical dim can be named by its size.
_PROBE = {"blocks": 1031, "block_size": 112, "heads": 5, "head_size": 9}


def backend_dim_names(attn_backend: Any) -> Optional[str]:
    """Letters for the logical cross-layer dims (num_layers, *get_kv_cache_shape): L, B for the
    blocks dim, N tokens, H heads, D head dim, C a content dim of 2*head_size (K|V packed),
    K a K/V dim of 2. vLLM probes its backends' shapes the same way (num_blocks=1234). None
    when the backend has no shape to probe or a dim matches none of them."""
    fn = getattr(attn_backend, "get_kv_cache_shape", None)
    if fn is None:
        return None
    p = _PROBE
    try:
        shape = tuple(fn(p["blocks"], p["block_size"], p["heads"], p["head_size"]))
    except (TypeError, ValueError, NotImplementedError, AssertionError):
        return None
    by_size = {p["blocks"]: "B", p["block_size"]: "N", p["heads"]: "H", p["head_size"]: "D",
               2 * p["head_size"]: "C", 2: "K"}
    names = "L" + "".join(by_size.get(int(s), "?") for s in shape)
    if "H" not in names and names.endswith("D"):
        names = names[:-1] + "C"            # MLA: (blocks, tokens, head_size) is one latent dim
    return None if "?" in names or names.count("B") != 1 else names


def derive_cross_layer_layout(kv_cache: Any, block_size: int, num_blocks: Optional[int] = None,
                              mla: bool = False, allow_unshared: bool = False,
                              layer_names: Optional[list[str]] = None,
                              dim_names: Optional[str] = None) -> Optional[KvLayout]:
    """One plane for vLLM's cross-layer KV tensor in logical order (first dim num_layers, see
    cross_layer_logical_view; blocks outermost in memory): a block is one contiguous segment
    holding every layer's K and V, so the daemon copies one piece per block instead of 2 per
    layer. None when the tensor's blocks are not contiguous across layers (the caller then
    describes it layer by layer).

    The descriptor names the in-block dim order, so two engines share chunks only when their
    blocks hold the same bytes: L layers, K a K/V dim of size 2 outside the token dim, H heads
    outside it, then from the token dim on N (tokens) and H D (heads, head dim) or C (one
    content dim: K|V halves packed per token, or MLA's latent). vLLM's backends give, NHD:
    FlashAttention (2, NB, BS, H, D) -> LKNHD; FlashAttention with K|V packed
    (NB, H, BS, 2*D) -> LNHC; MLA (NB, BS, C) -> LNC. `dim_names` (backend_dim_names) names the
    dims from the backend's own shape; without it they are named by position and size, which
    cannot tell a heads dim of 2 from a K/V dim."""
    t = kv_cache
    if t.dim() < 3:
        raise LayoutError(f"expected a cross-layer KV tensor (num_layers, ...), got shape {tuple(t.shape)}")
    if num_blocks is None:
        num_blocks = _guess_num_blocks(t[0], block_size)
    bdim = _block_dim(t, num_blocks)
    after = [i for i in range(bdim + 1, t.dim()) if t.shape[i] == block_size]
    if bdim == 0 or not after:
        raise LayoutError(f"expected dims (num_layers, ..., num_blocks, ..., block_size, ...) in the cross-layer "
                          f"KV tensor of shape {tuple(t.shape)}")
    content = list(range(after[0], t.dim()))
    letters: dict[int, str] = {0: "L"}
    names = "NHD" if len(content) == 3 else "NC" if len(content) == 2 else "X" * len(content)
    for i, d in enumerate(content):
        letters[d] = names[i]
    for d in range(1, t.dim()):
        if d != bdim and d not in letters:
            letters[d] = "K" if t.shape[d] == 2 else "H"
    if dim_names is not None and len(dim_names) == t.dim() and dim_names.index("B") == bdim:
        letters = {d: c for d, c in enumerate(dim_names) if d != bdim}
    dims = [d for d in range(t.dim()) if d != bdim]
    order = _packed_order([t.shape[d] for d in dims], [t.stride(d) for d in dims])
    if order is None or t.stride(bdim) < max(t.stride(d) * t.shape[d] for d in dims):
        return None
    es = t.element_size()
    block_bytes = es
    for d in dims:
        block_bytes *= t.shape[d]
    regions: dict[tuple[str, int], Region] = {}
    region = _region_for(t, regions, allow_unshared)
    base = (t.data_ptr() - region.base_ptr) + region.base_offset
    tag = "".join(letters[dims[i]] for i in order if t.shape[dims[i]] != 1)
    kind = "mla" if mla else "kv"
    plane = Plane(0, region.region_id, base, t.stride(bdim) * es, block_bytes)
    return KvLayout([region], [plane], num_blocks, block_size, f"{kind}-xl{tag}-x1",
                    list(layer_names or [f"layer.{i}" for i in range(t.shape[0])]))


def _natural_key(name: str) -> list[Any]:
    import re

    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
