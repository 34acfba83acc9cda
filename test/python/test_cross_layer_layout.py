"""vLLM's cross-layer KV tensor as register_cross_layers_kv_cache receives it, allocated the way
KVConnectorModelRunnerMixin.allocate_uniform_kv_caches does (vllm-project/vllm; see
docs/integrations.md): num_layers prepended to the backend's get_kv_cache_shape, permuted by
get_kv_cache_stride_order(include_num_layers_dimension=True) into the physical shape, allocated
contiguous, and that physical (blocks-first) tensor handed to the connector with the backend.
kvtier must describe it as one plane whose block b is exactly the bytes of vLLM's block b
across every layer, and name the in-block order in the descriptor."""
import pytest
import torch

from kvtier.layout import LayoutError, backend_dim_names, cross_layer_logical_view, derive_cross_layer_layout
from kvtier.shm import ShmAllocator

L, NB, BS, H, D = 4, 8, 16, 2, 64


def backend(shape, order):
    """A stand-in attention backend: the two static methods vLLM's allocation calls."""
    class Backend:
        @staticmethod
        def get_kv_cache_shape(num_blocks, block_size, num_kv_heads, head_size, cache_dtype_str="auto"):
            return shape(num_blocks, block_size, num_kv_heads, head_size)

        @staticmethod
        def get_kv_cache_stride_order(include_num_layers_dimension=False):
            assert include_num_layers_dimension
            return order
    return Backend


# name: (backend, descriptor) -- shapes and NHD stride orders as vLLM's backends declare them
BACKENDS = {
    "flash_attn (2, NB, BS, H, D)": (backend(lambda nb, bs, h, d: (2, nb, bs, h, d), (2, 0, 1, 3, 4, 5)), "kv-xlLKNHD-x1"),
    "flash_attn K|V packed (NB, H, BS, 2D)": (backend(lambda nb, bs, h, d: (nb, h, bs, 2 * d), (1, 0, 3, 2, 4)), "kv-xlLNHC-x1"),
    "flashinfer (NB, 2, BS, H, D)": (backend(lambda nb, bs, h, d: (nb, 2, bs, h, d), (1, 0, 2, 3, 4, 5)), "kv-xlLKNHD-x1"),
    "flash_attn HND (2, NB, BS, H, D)": (backend(lambda nb, bs, h, d: (2, nb, bs, h, d), (2, 4, 0, 1, 3, 5)), "kv-xlHLKND-x1"),
    "flashinfer_mla (NB, BS, C)": (backend(lambda nb, bs, h, d: (nb, bs, d), (1, 0, 2, 3)), "kv-xlLNC-x1"),
}


def allocate_uniform(alloc, be):
    """allocate_uniform_kv_caches: the physical tensor vLLM registers."""
    shape = (L,) + tuple(be.get_kv_cache_shape(NB, BS, H, D))
    physical = tuple(shape[i] for i in be.get_kv_cache_stride_order(include_num_layers_dimension=True))
    t = alloc.empty(physical, torch.float32)
    t.copy_(torch.arange(t.numel(), dtype=torch.float32).view(physical))
    return t


@pytest.fixture
def alloc():
    with ShmAllocator() as a:
        yield a


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_one_plane_whose_block_is_vllms_block_across_all_layers(alloc, name):
    be, descriptor = BACKENDS[name]
    t = allocate_uniform(alloc, be)
    assert t.shape[0] == NB, "vLLM hands the blocks-first physical tensor"
    layout = derive_cross_layer_layout(cross_layer_logical_view(t, be), BS, NB, dim_names=backend_dim_names(be))
    assert layout is not None and layout.descriptor == descriptor
    (plane,) = layout.planes
    per_block = t[0].numel() * 4
    assert plane.block_bytes == plane.block_stride == per_block
    flat = t.view(-1).view(torch.uint8)
    region_start = t.data_ptr() - flat.data_ptr()   # 0: the tensor starts its region
    for b in (0, 3, NB - 1):
        start = region_start + plane.offset + b * plane.block_stride
        assert torch.equal(flat[start:start + plane.block_bytes], t[b].contiguous().view(-1).view(torch.uint8)), \
            f"block {b} of the plane is not vLLM's block {b}"


def test_the_physical_tensor_without_its_backend_is_refused_not_misread(alloc):
    be, _ = BACKENDS["flash_attn (2, NB, BS, H, D)"]
    t = allocate_uniform(alloc, be)
    with pytest.raises(LayoutError):
        derive_cross_layer_layout(cross_layer_logical_view(t, None), BS, NB)


def test_a_logical_view_is_taken_as_it_is(alloc):
    """Callers that already pass the num_layers-first view (the permuted tensor) are not
    permuted a second time."""
    be, descriptor = BACKENDS["flash_attn (2, NB, BS, H, D)"]
    t = allocate_uniform(alloc, be)
    logical = t.permute(1, 2, 0, 3, 4, 5)
    assert cross_layer_logical_view(logical, be) is logical
    assert derive_cross_layer_layout(logical, BS, NB).descriptor == descriptor


def test_per_layer_flash_attn_with_k_and_v_packed_is_one_plane_per_layer(alloc):
    """Per layer, FlashAttention with K|V packed allocates physical (NB, BS, H, 2D) and hands the
    logical view (NB, H, BS, 2D): a block is contiguous, its content per head is not, so it is
    one plane per layer (kv-NHC-x1), not refused."""
    from kvtier.layout import derive_layout

    phys = [alloc.empty((NB, BS, H, 2 * D), torch.float32) for _ in range(L)]
    for i, t in enumerate(phys):
        t.copy_(torch.arange(t.numel(), dtype=torch.float32).view(t.shape) + i)
    kv = {f"model.layers.{i}.self_attn.attn": t.permute(0, 2, 1, 3) for i, t in enumerate(phys)}
    layout = derive_layout(kv, BS, NB)
    assert layout.descriptor == "kv-NHC-x1" and len(layout.planes) == L
    for plane, t in zip(layout.planes, phys):
        assert plane.block_bytes == plane.block_stride == BS * H * 2 * D * 4
        flat = t.view(-1).view(torch.uint8)
        for b in (0, NB - 1):
            start = plane.offset + b * plane.block_stride
            assert torch.equal(flat[start:start + plane.block_bytes], t[b].reshape(-1).view(torch.uint8))
