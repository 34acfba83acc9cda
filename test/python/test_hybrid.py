"""Hybrid models through SupportsHMA: the reference engine with full-attention and
sliding-window layers (two KV cache groups, a block table each), KVTierConnector in
vLLM's call order against a real kvtierd, real /dev/shm tensors. Loaded KV must
give the logits of a full recompute, bit for bit (float32)."""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch

from kvtier.refengine import ModelConfig, RefEngine
from kvtier.refengine.vllm_shapes import (FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec, MambaSpec,
                                          SlidingWindowSpec)
from kvtier.vllm import KVTierConnector
from kvtier.vllm.compat import Role, SupportsHMA
from paused_daemon import long_prompt_while_paused

_rng = random.Random(7)
P1 = [_rng.randrange(1024) for _ in range(1000)]
P2 = P1[:900] + [_rng.randrange(1024) for _ in range(100)]
# layers 1 and 3 slide over 100 tokens: a hit at 768 needs only chunk 2 of their KV
HYBRID = ModelConfig(layers=4, sliding_window=100, sliding_layers=(1, 3))


def engine(sock, **kw):
    extra = {"kvtier_timeout_s": 3.0, "kvtier_retry_interval_s": 0.2, **kw.pop("extra", {})}
    kw.setdefault("num_blocks", 300)
    return RefEngine(sock, model=HYBRID, extra=extra, **kw)


def recompute(prompt):
    e = RefEngine(None, model=HYBRID, num_blocks=300)
    try:
        return e.generate("ref", prompt).first_logits
    finally:
        e.close()


def test_the_connector_is_supports_hma():
    assert issubclass(KVTierConnector, SupportsHMA)
    assert callable(KVTierConnector.request_finished_all_groups)


@pytest.mark.parametrize("free_out_of_window", [False, True], ids=["blocks-kept", "vllm-frees-window"])
def test_hybrid_load_equals_recompute_and_restores_every_group(daemon, free_out_of_window):
    a = engine(daemon.socket, free_out_of_window=free_out_of_window)
    try:
        r = a.generate("producer", P1)
        a.drain()
        sides = a.worker._worker.sides
        assert [s.group_index for s in sides] == [0, 1]
        full, sw = (s.stats["stored_chunks"] for s in sides)
        assert full == 3
        # sliding chunks are stored in the step that completes them, while their window is
        # resident: with vLLM-style freeing too (at the end only the last 100 tokens are)
        assert sw == 3
        assert len(a.free_blocks) == a.cache.num_blocks - 1
    finally:
        a.close()
    b = engine(daemon.socket, free_out_of_window=free_out_of_window)
    try:
        r = b.generate("consumer", P2)
        b.drain()
        assert r.external_tokens == 768 and r.load_error_blocks == set()
        full_side, sw_side = b.worker._worker.sides
        assert full_side.stats["loaded_chunks"] == 3
        assert sw_side.stats["loaded_chunks"] == 1, "only the window before token 768 is loaded"
        assert torch.equal(r.first_logits, recompute(P2))
    finally:
        b.close()


def test_a_sliding_window_not_cached_shortens_the_hit_never_half_restores(daemon):
    """The sliding group's chunk 2 is dropped from the daemon: a hit at 768 would need it, so
    the hit shortens to 512 (whose window, chunk 1, is cached), logits still equal recompute."""
    from kvtier import KvtierClient
    from kvtier.vllm.scheduler import SLIDING_CHAIN_ROOT
    from kvtier.hashing import chunk_hashes

    a = engine(daemon.socket, free_out_of_window=True)
    try:
        a.generate("producer", P1)
        a.drain()
        sw_fp = a.worker._worker.sides[1].client.fingerprint
    finally:
        a.close()
    c = KvtierClient(daemon.socket, sw_fp, "probe", timeout=3.0)
    try:
        keys = chunk_hashes(SLIDING_CHAIN_ROOT, P1, 256)
        assert c.lookup(keys=keys[:3], no_lease=True).hit_chunks == 3
        assert c.invalidate(keys=[keys[2]]) == 1
    finally:
        c.close()
    b = engine(daemon.socket, free_out_of_window=True)
    try:
        r = b.generate("consumer", P2)
        assert r.external_tokens == 512 and r.load_error_blocks == set()
        assert torch.equal(r.first_logits, recompute(P2))
    finally:
        b.close()


def test_a_group_kvtier_cannot_restore_makes_the_prefix_a_miss(daemon):
    """A mamba group: nothing is looked up or saved, and the reason is counted."""
    from kvtier.refengine.vllm_shapes import KVCacheBlocks
    from kvtier.refengine.engine import Request, vllm_config

    cfg = vllm_config(daemon.socket, model_name="m", dtype=torch.float32, mla=False)
    kvc = KVCacheConfig(64, [KVCacheGroupSpec(["model.layers.0.self_attn.attn"], FullAttentionSpec(16)),
                             KVCacheGroupSpec(["model.layers.1.mixer"], MambaSpec(16))])
    s = KVTierConnector(cfg, Role.SCHEDULER, kvc)
    try:
        req = Request("r", P1)
        assert s.get_num_new_matched_tokens(req, 0) == (0, False)
        req.num_computed_tokens = 1000
        assert s.request_finished_all_groups(req, (list(range(1, 64)), list(range(1, 64)))) == (False, None)
        st = s.get_kv_connector_stats()
        assert st.data["bypassed"] == 1 and st.data["bypassed_kv_cache_group"] == 1
    finally:
        s.shutdown()


def test_a_window_lookup_to_a_paused_daemon_does_not_hold_the_batch(daemon):
    """The full-attention group's Lookup is answered, then the daemon is paused (SIGSTOP) just
    as the sliding group's window Lookup goes out. The scheduler must poll that second round
    across steps, answering vLLM "not yet", so the running requests keep decoding; with the
    lookup timeout at 10 s, a scheduler that waited for the window would stall a step for 10 s.
    Once the daemon is resumed the hit is 768 tokens, loaded, logits equal to a recompute's."""
    a = engine(daemon.socket)
    try:
        a.generate("producer", P1)
        a.drain()
    finally:
        a.close()
    b = engine(daemon.socket, extra={"kvtier_lookup_timeout_s": 10.0, "kvtier_lookup_wait_ms": 5})
    sched = b.scheduler._scheduler
    sliding = [g for g in sched.clients if sched._kind(g) == "sliding"]
    assert sliding == [1]
    client = sched.clients[1]
    send, paused = client.submit, []

    def pause_then_send(body, *a, **kw):
        if not paused:
            paused.append(True)
            daemon.pause()
        return send(body, *a, **kw)

    client.submit = pause_then_send
    long = long_prompt_while_paused(daemon, b, P2, "the window Lookup", max_step_s=3.0, pause=False)
    assert paused, "the window Lookup was sent"
    assert torch.equal(long.first_logits, recompute(P2))
