"""CUDA KV tensors: regions carry the CUDA IPC handle of the cudaMalloc block and
plane offsets relative to it; the torch block copier works on device memory. Needs a
GPU (skipped with the reason otherwise); block form through the daemon also
needs a daemon whose addon was built with CUDA."""
import pytest
import torch

from kvtier.torch_copy import TorchBlockCopier
from kvtier.framing import NO_BLOCK, unpack_u32
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
    ca, cb = TorchBlockCopier(derive_layout(a, BS), 256), TorchBlockCopier(derive_layout(b, BS), 256)
    data = ca.gather(list(range(16)))
    cb.scatter(data, [NO_BLOCK] + list(range(17, 32)))
    assert torch.equal(b["l.1"][17], a["l.1"][:, 1])
    assert torch.all(b["l.1"][16] == 0)


def test_block_form_through_the_daemon_on_device_memory(daemon):
    """The vLLM-on-GPU path: KV in cudaMalloc'd torch tensors, registered by
    CUDA IPC handle; the daemon gathers blocks into its pinned pool and
    scatters them into other blocks of another layout, byte-exact."""
    from kvtier.client import KvtierClient
    from kvtier.hashing import Fingerprint

    fp = Fingerprint(model="test/cuda-blocks", dtype="float16", kv_layout="kv-NHD-x2", block_size=BS)

    def register(kv):
        lay = derive_layout(kv, BS, NB)
        c = KvtierClient(daemon.socket, fp, "pytest-cuda", timeout=20.0)
        assert c.register_kv(lay.to_register()).chunk_bytes == lay.chunk_bytes(256)
        return c, lay

    src = {f"l.{i}": torch.randn(2, NB, BS, H, D, device="cuda", dtype=torch.float16) for i in range(3)}
    dst = {f"l.{i}": torch.full((NB, 2, BS, H, D), 7.0, device="cuda", dtype=torch.float16) for i in range(3)}
    torch.cuda.synchronize()
    blocks = 256 // BS
    a, lay_a = register(src)
    b, lay_b = register(dst)
    try:
        assert all(len(r.cuda_ipc_handle) == 64 for r in lay_a.regions + lay_b.regions)
        tokens = list(range(300, 300 + 256 + 5))
        table = list(range(3, 3 + blocks))
        (_, copied), (_, committed) = a.store_blocks(tokens, table).wait(20.0)
        assert copied.stored_chunks == 1
        ok = b.lookup(tokens=tokens, lease_ttl_ms=10000)
        assert ok.hit_chunks == 1
        out = list(range(NB - blocks, NB))
        out[1] = NO_BLOCK  # this block stays as it was
        (_, done), = b.retrieve_blocks(ok.lease_id, 0, 1, out).wait(20.0)
        assert unpack_u32(done.failed_block_ids) == []
        assert done.loaded_chunks == 1
        torch.cuda.synchronize()
        for i in range(3):
            for k, (s_blk, d_blk) in enumerate(zip(table, out)):
                if d_blk == NO_BLOCK:
                    continue
                assert torch.equal(dst[f"l.{i}"][d_blk], src[f"l.{i}"][:, s_blk]), (i, k)
            assert torch.all(dst[f"l.{i}"][NB - blocks + 1] == 7)
            assert torch.all(dst[f"l.{i}"][: NB - blocks] == 7)
    finally:
        a.close()
        b.close()
