"""Regions and planes derived from tensor strides, for the layouts vLLM uses,
and the torch block copier (the inline fallback) on those layouts."""
import pytest
import torch

from kvtier.torch_copy import TorchBlockCopier
from kvtier.framing import NO_BLOCK
from kvtier.layout import LayoutError, derive_layout
from kvtier.shm import ShmAllocator

NB, BS, H, D = 12, 4, 2, 8


@pytest.fixture
def alloc():
    with ShmAllocator() as a:
        yield a


def fill(ts):
    g = torch.Generator().manual_seed(1)
    for t in ts.values():
        t.copy_(torch.randn(t.shape, generator=g).to(t.dtype))
    return ts


def test_flash_attn_two_planes_per_layer(alloc):
    kv = {f"layers.{i}": alloc.empty((2, NB, BS, H, D), torch.float16) for i in range(3)}
    lay = derive_layout(kv, BS)
    assert lay.descriptor == "kv-NHD-x2"
    assert len(lay.regions) == 3 and all(r.shm_path.startswith("/dev/shm/") for r in lay.regions)
    blk = BS * H * D * 2
    assert [(p.layer, p.region_id, p.offset, p.block_stride, p.block_bytes) for p in lay.planes[:2]] == [
        (0, 0, 0, blk, blk), (0, 0, NB * blk, blk, blk)]
    assert lay.chunk_bytes(8) == 2 * 3 * 2 * blk


def test_flashinfer_interleaved_planes(alloc):
    kv = {f"l.{i}": alloc.empty((NB, 2, BS, H, D), torch.bfloat16) for i in range(2)}
    lay = derive_layout(kv, BS)
    blk = BS * H * D * 2
    assert lay.descriptor == "kv-NHD-x2"
    assert [(p.offset, p.block_stride, p.block_bytes) for p in lay.planes[:2]] == [(0, 2 * blk, blk),
                                                                                  (blk, 2 * blk, blk)]


def test_mla_one_plane(alloc):
    kv = {f"l.{i}": alloc.empty((NB, BS, 576), torch.bfloat16) for i in range(2)}
    lay = derive_layout(kv, BS, mla=True)
    assert lay.descriptor == "mla-NC-x1"
    assert [(p.offset, p.block_stride, p.block_bytes) for p in lay.planes] == [(0, BS * 576 * 2, BS * 576 * 2)] * 2


def test_all_layers_in_one_shared_buffer(alloc):
    buf = alloc.empty((3, 2, NB, BS, H, D), torch.float16)
    kv = {f"l.{i}": buf[i] for i in range(3)}
    lay = derive_layout(kv, BS)
    blk = BS * H * D * 2
    assert len(lay.regions) == 1
    assert [p.offset for p in lay.planes] == [i * NB * blk for i in range(6)]


def test_hnd_strides_are_named(alloc):
    t = alloc.empty((2, NB, H, BS, D), torch.float16).permute(0, 1, 3, 2, 4)
    assert derive_layout({"l": t}, BS).descriptor == "kv-HND-x2"


def test_layers_sorted_naturally_not_lexically(alloc):
    kv = {f"model.layers.{i}.attn": alloc.empty((2, NB, BS, H, D), torch.float16) for i in (10, 2, 1)}
    assert derive_layout(kv, BS).layer_names == ["model.layers.1.attn", "model.layers.2.attn", "model.layers.10.attn"]


def test_errors_name_the_problem(alloc):
    with pytest.raises(LayoutError, match="shared memory"):
        derive_layout({"l": torch.zeros(2, NB, BS, H, D)}, BS)
    with pytest.raises(LayoutError, match="num_blocks"):
        derive_layout({"l": alloc.empty((2, NB, BS, H, D), torch.float16)}, BS, num_blocks=99)
    t = alloc.empty((2, NB, BS, H, D * 2), torch.float16)[..., :D]
    with pytest.raises(LayoutError, match="packed"):
        derive_layout({"l": t}, BS)


def test_flash_attn_and_flashinfer_chunks_are_identical(alloc):
    fa = fill({f"l.{i}": alloc.empty((2, NB, BS, H, D), torch.float16) for i in range(2)})
    fi = {f"l.{i}": alloc.empty((NB, 2, BS, H, D), torch.float16) for i in range(2)}
    for name in fi:
        fi[name].copy_(fa[name].transpose(0, 1))
    ca, cb = TorchBlockCopier(derive_layout(fa, BS), 8), TorchBlockCopier(derive_layout(fi, BS), 8)
    assert ca.gather([3, 7]) == cb.gather([3, 7])
    data = ca.gather([1, 2])
    cb.scatter(data, [9, NO_BLOCK])
    assert torch.equal(fi["l.1"][9], fa["l.1"][:, 1])
    assert not torch.equal(fi["l.1"][NB - 1], fa["l.1"][:, 2])


def test_cuda_ipc_handle_forms_from_torch():
    from kvtier.layout import _ipc_mem_handle
    raw = bytes(range(64))
    assert _ipc_mem_handle(raw) == raw                   # older torch: the bare handle
    assert _ipc_mem_handle(b"\x02c" + raw) == raw        # torch 2.x: version, kind 'c' (cudaMalloc block)
    with pytest.raises(LayoutError, match="expandable_segments:False"):
        _ipc_mem_handle(b"\x02e" + raw[:40])             # torch 2.x expandable segment
    with pytest.raises(LayoutError, match="expected a 64-byte CUDA IPC handle"):
        _ipc_mem_handle(raw[:10])
