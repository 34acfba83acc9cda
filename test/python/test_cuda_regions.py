"""CUDA KV tensors: regions carry the CUDA IPC handle of the cudaMalloc block and
plane offsets relative to it; the Python codec works on device memory. Needs a
GPU (skipped with the reason otherwise); block form through the daemon also
needs a daemon whose addon was built with CUDA."""
import pytest
import torch

from kvtier.codec import ChunkCodec
from kvtier.framing import NO_BLOCK
from kvtier.layout import derive_layout

if not torch.cuda.is_available():
    pytest.skip(f"no CUDA device visible to torch {torch.__version__}: CUDA IPC regions not tested here",
                allow_module_level=True)

NB, BS, H, D = 32, 16, 2, 64


def test_cuda_regions_from_ipc_handles():
    kv = {f"l.{i}": torch.randn(2, NB, BS, H, D, device="cuda", dtype=torch.float16) for i in range(3)}
    lay = derive_layout(kv, BS)
    assert lay.descriptor == "kv-NHD-x2"
    for r in lay.regions:
        assert len(r.cuda_ipc_handle) == 64 and r.shm_path == ""
        assert r.size_bytes >= r.base_offset + 2 * NB * BS * H * D * 2
    for p in lay.planes:
        assert p.offset >= lay.regions[p.region_id].base_offset


def test_views_of_one_cuda_buffer_share_a_region():
    buf = torch.zeros(3, 2, NB, BS, H, D, device="cuda", dtype=torch.bfloat16)
    lay = derive_layout({f"l.{i}": buf[i] for i in range(3)}, BS)
    assert len(lay.regions) == 1
    base = lay.regions[0].base_offset
    assert [p.offset - base for p in lay.planes] == [i * NB * BS * H * D * 2 for i in range(6)]


def test_codec_on_device_memory():
    a = {f"l.{i}": torch.randn(2, NB, BS, H, D, device="cuda", dtype=torch.float16) for i in range(2)}
    b = {f"l.{i}": torch.zeros(NB, 2, BS, H, D, device="cuda", dtype=torch.float16) for i in range(2)}
    ca, cb = ChunkCodec(derive_layout(a, BS), 256), ChunkCodec(derive_layout(b, BS), 256)
    data = ca.gather(list(range(16)))
    cb.scatter(data, [NO_BLOCK] + list(range(17, 32)))
    assert torch.equal(b["l.1"][17], a["l.1"][:, 1])
    assert torch.all(b["l.1"][16] == 0)
