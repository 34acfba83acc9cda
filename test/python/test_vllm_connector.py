"""KVTierConnector driven the way vLLM drives it (stand-in Request,
SchedulerOutput, ForwardContext; real torch CPU KV tensors in /dev/shm; a real
kvtierd): sharing a prefix between two engine instances, and the failure paths."""
import logging
import time

import pytest
import torch

from kvtier.shm import ShmAllocator
from vllm_sim import BLOCK, MiniEngine, Request, matched_tokens

PREFIX = [(i * 7919 + 13) % 32000 for i in range(1000)]


@pytest.fixture
def alloc():
    with ShmAllocator() as a:
        yield a


def req(rid, tokens):
    return Request(rid, list(tokens))


def test_second_engine_loads_first_768_tokens_byte_exact(daemon, alloc):
    a = MiniEngine(daemon.socket, alloc, "A")
    b = MiniEngine(daemon.socket, alloc, "B")
    try:
        assert a.worker._worker.mode in ("blocks", "inline")
        r1 = req("r1", PREFIX + [1, 2, 3] * 40)
        s1 = a.run(r1)
        assert s1.external_tokens == 0
        assert s1.finished_sending == {"r1"}, "the async save must be reported by get_finished"
        assert a.worker._worker.stats["stored_chunks"] >= 4

        r2 = req("r2", PREFIX + [9, 8] * 30)
        s2 = b.run(r2)
        assert s2.external_tokens == 768
        assert s2.load_errors == set()
        for pos in range(0, len(r2.prompt_token_ids), 7):
            got, want = b.token_kv(s2.block_table, pos), b.expected_kv(r2.prompt_token_ids, pos)
            assert all(torch.equal(g, w) for g, w in zip(got, want)), f"token {pos}"
        for pos in (0, 255, 256, 767):
            assert all(torch.equal(x, y) for x, y in zip(b.token_kv(s2.block_table, pos),
                                                         a.token_kv(s1.block_table, pos)))
    finally:
        a.close()
        b.close()


def test_never_claims_the_last_prompt_token(daemon, alloc):
    a = MiniEngine(daemon.socket, alloc, "A")
    b = MiniEngine(daemon.socket, alloc, "B")
    try:
        a.run(req("w", PREFIX[:768]))
        s = b.run(req("x", PREFIX[:768]))
        assert s.external_tokens == 767
        assert s.load_errors == set()
    finally:
        a.close()
        b.close()


def test_daemon_not_running_is_a_miss_with_one_warning(tmp_path, alloc, caplog):
    caplog.set_level(logging.WARNING, logger="kvtier")
    e = MiniEngine(str(tmp_path / "absent.sock"), alloc, "E")
    try:
        for i in range(5):
            s = e.run(req(f"r{i}", PREFIX))
            assert s.external_tokens == 0
            assert s.load_errors == set()
            assert s.finished_sending in (set(), {f"r{i}"})
        assert not e.held, "blocks of finished requests must come back"
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "unavailable" in r.message]
        assert len(warnings) == 2, [r.message for r in warnings]  # one per side: scheduler and worker
    finally:
        e.close()


def test_daemon_killed_before_load_reports_failed_blocks_then_reconnects(daemon, alloc):
    a = MiniEngine(daemon.socket, alloc, "A")
    b = MiniEngine(daemon.socket, alloc, "B")
    try:
        a.run(req("r1", PREFIX + [5] * 100))
        r2 = req("r2", PREFIX + [6] * 50)
        s = b.run(r2, before_worker=daemon.kill)
        assert s.external_tokens == 768
        loaded_blocks = set(s.block_table[:768 // BLOCK])
        assert s.load_errors == loaded_blocks, "every block of the failed load must be reported"

        daemon.start()
        import time
        time.sleep(0.3)  # past the connector's retry interval
        s3 = a.run(req("r3", PREFIX + [7] * 30))  # fresh daemon: empty, store again
        assert s3.external_tokens == 0
        assert s3.finished_sending == {"r3"}
        s4 = b.run(req("r4", PREFIX + [8] * 30))
        assert s4.external_tokens == 768
        assert s4.load_errors == set()
        pos = 500
        assert all(torch.equal(g, w) for g, w in zip(b.token_kv(s4.block_table, pos),
                                                     b.expected_kv(PREFIX, pos)))
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("change", [{"model": "other/model"}, {"dtype": torch.bfloat16},
                                    {"extra": {"kvtier_cache_salt": "tenant-b"}}],
                         ids=["model", "dtype", "salt"])
def test_other_namespace_never_gets_the_chunks(daemon, alloc, change):
    a = MiniEngine(daemon.socket, alloc, "A")
    b = MiniEngine(daemon.socket, alloc, "B", **change)
    try:
        a.run(req("r1", PREFIX + [1] * 30))
        s = b.run(req("r2", PREFIX + [2] * 30))
        assert s.external_tokens == 0
    finally:
        a.close()
        b.close()


def test_other_kv_layout_never_gets_the_chunks(daemon, alloc):
    """A flashinfer-style engine shares with flash-attn (same chunk bytes), an HND engine does not."""
    a = MiniEngine(daemon.socket, alloc, "A")
    b = MiniEngine(daemon.socket, alloc, "B", extra={"kvtier_kv_layout": "kv-HND-x2"})
    try:
        a.run(req("r1", PREFIX + [1] * 30))
        assert b.run(req("r2", PREFIX + [2] * 30)).external_tokens == 0
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("a_shm,b_shm", [(True, False), (False, True), (False, False)],
                         ids=["blocks-to-inline", "inline-to-blocks", "inline-to-inline"])
def test_inline_fallback_shares_chunks_with_block_form(daemon, alloc, a_shm, b_shm):
    """KV outside /dev/shm cannot be mapped by the daemon: the worker copies chunk bytes
    itself, in the same chunk layout, so both kinds of engines share chunks."""
    a = MiniEngine(daemon.socket, alloc, "A", shm=a_shm)
    b = MiniEngine(daemon.socket, alloc, "B", shm=b_shm)
    try:
        assert a.worker._worker.mode == ("blocks" if a_shm else "inline")
        assert b.worker._worker.mode == ("blocks" if b_shm else "inline")
        a.run(req("r1", PREFIX + [4] * 20))
        r2 = req("r2", PREFIX + [3] * 20)
        s = b.run(r2)
        assert s.external_tokens == 768 and s.load_errors == set()
        for pos in range(0, len(r2.prompt_token_ids), 5):
            assert all(torch.equal(g, w) for g, w in zip(b.token_kv(s.block_table, pos),
                                                         b.expected_kv(r2.prompt_token_ids, pos))), pos
    finally:
        a.close()
        b.close()


def test_local_prefix_cache_hit_is_not_overwritten(daemon, alloc):
    """With vLLM's own prefix cache covering the first 512 tokens, only chunk 2 is
    loaded and the locally computed blocks get NO_BLOCK."""
    a = MiniEngine(daemon.socket, alloc, "A")
    b = MiniEngine(daemon.socket, alloc, "B")
    try:
        a.run(req("r1", PREFIX + [4] * 20))
        r = req("r2", PREFIX + [3] * 20)
        ext, _ = matched_tokens(b.scheduler, r, 512)
        assert ext == 256
        from vllm_sim import CachedRequestData, KVCacheBlocks, NewRequestData, SchedulerOutput
        table = list(range(100, 100 + 64))
        b.scheduler.update_state_after_alloc(r, KVCacheBlocks(table), ext)
        so = SchedulerOutput([NewRequestData("r2", r.prompt_token_ids, (table,), 512)], CachedRequestData(),
                             {"r2": len(r.prompt_token_ids) - 768}, set())
        meta = b.scheduler.build_connector_meta(so)
        (load,) = meta.loads
        assert (load.first_chunk, load.num_chunks) == (2, 1)
        assert load.block_ids == table[32:48]
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("attr,value,reason", [("mm_features", ["image without a hash"], "multimodal_unhashed"),
                                               ("lora_request", object(), "lora_unnamed"),
                                               ("prompt_embeds", object(), "prompt_embeds")])
def test_requests_whose_kv_is_not_keyed_by_tokens_bypass_kvtier(daemon, alloc, attr, value, reason):
    """Neither looked up nor saved, and counted by reason in the daemon's stats (kvtier stats)."""
    a = MiniEngine(daemon.socket, alloc, "A")
    b = MiniEngine(daemon.socket, alloc, "B")
    try:
        a.run(req("r1", PREFIX + [4] * 20))
        special = req("r2", PREFIX + [3] * 20)
        setattr(special, attr, value)
        s = b.run(special)
        assert s.external_tokens == 0
        assert s.finished_sending == set() and not b.held
        st = wait_daemon_stats(daemon.socket, lambda st: st.get("bypassed", {}).get(reason) == 1, 5.0)
        assert st["bypassed"] == {reason: 1}
    finally:
        a.close()
        b.close()


def test_daemon_killed_during_load_never_leaves_wrong_kv(daemon, alloc):
    """Killed after the Retrieve went out: each loaded block is either right or reported."""
    a = MiniEngine(daemon.socket, alloc, "A")
    b = MiniEngine(daemon.socket, alloc, "B")
    try:
        a.run(req("r1", PREFIX + [5] * 100))
        r2 = req("r2", PREFIX + [6] * 50)
        s = b.run(r2, after_start_load=daemon.kill)
        assert s.external_tokens == 768
        for pos in range(768):
            block = s.block_table[pos // BLOCK]
            right = all(torch.equal(g, w) for g, w in zip(b.token_kv(s.block_table, pos),
                                                          b.expected_kv(r2.prompt_token_ids, pos)))
            assert right or block in s.load_errors, f"token {pos}: wrong KV and not reported"
    finally:
        a.close()
        b.close()


def test_hung_daemon_costs_a_bounded_wait_and_reports_failed_loads(daemon, alloc):
    import time

    a = MiniEngine(daemon.socket, alloc, "A", extra={"kvtier_timeout_s": 0.5})
    b = MiniEngine(daemon.socket, alloc, "B", extra={"kvtier_timeout_s": 0.5})
    try:
        a.run(req("r1", PREFIX + [5] * 100))
        r2 = req("r2", PREFIX + [6] * 50)
        s = b.run(r2, after_start_load=daemon.pause)
        assert s.load_errors == set(s.block_table[:768 // BLOCK])
        t0 = time.monotonic()
        s2 = b.run(req("r3", PREFIX + [7] * 50))  # lookup times out (0.5 s), then backs off
        assert s2.external_tokens == 0
        assert time.monotonic() - t0 < 3.0
    finally:
        daemon.resume()
        a.close()
        b.close()


def test_daemon_with_another_chunk_size_is_a_miss(daemon_factory, alloc, caplog):
    d = daemon_factory("chunk_size: 128\n")
    caplog.set_level(logging.WARNING, logger="kvtier")
    e = MiniEngine(d.socket, alloc, "E")
    try:
        assert e.run(req("r1", PREFIX)).external_tokens == 0
        assert e.run(req("r2", PREFIX)).external_tokens == 0
        assert any("KVT_NAMESPACE_MISMATCH" in r.message for r in caplog.records)
    finally:
        e.close()


def test_metadata_pickles_for_the_worker_processes():
    import pickle

    from kvtier.vllm import KVTierConnectorMetadata, LoadSpec, SaveSpec

    meta = KVTierConnectorMetadata([LoadSpec("r", {0: 5}, 1, 2, [1, 2, 0xFFFFFFFF])],
                                   [SaveSpec("s", [1, 2, 3], [4], 0)])
    assert pickle.loads(pickle.dumps(meta)) == meta


# -- tensor parallelism --------------------------------------------------------------------------

def test_tp2_each_rank_stores_and_loads_only_its_own_shard(daemon, alloc):
    """TP=2 on both engines (same tp_size): each rank's worker holds different KV (its heads);
    the consumer's rank r gets rank r's bytes, never the other rank's."""
    a = MiniEngine(daemon.socket, alloc, "A", tp_size=2)
    b = MiniEngine(daemon.socket, alloc, "B", tp_size=2)
    try:
        assert [w._worker.rank for w in b.workers] == [0, 1]
        a.run(req("r1", PREFIX + [1, 2, 3] * 40))
        assert all(w._worker.stats["stored_chunks"] == 4 for w in a.workers)
        r2 = req("r2", PREFIX + [9, 8] * 30)
        lookups = daemon_lookups(daemon.socket)
        s = b.run(r2)
        assert s.external_tokens == 768 and s.load_errors == set()
        assert daemon_lookups(daemon.socket) == lookups + 1, "one Lookup answers for both ranks"
        assert len(b.scheduler._scheduler.clients) == 1
        for idx in (0, 1):
            for pos in range(0, 768, 11):
                got = b.token_kv(s.block_table, pos, idx)
                assert all(torch.equal(g, w) for g, w in zip(got, b.expected_kv(r2.prompt_token_ids, pos, idx))), \
                    (idx, pos)
                other = b.expected_kv(r2.prompt_token_ids, pos, 1 - idx)
                assert not all(torch.equal(g, w) for g, w in zip(got, other)), "the shards must differ"
    finally:
        a.close()
        b.close()


def daemon_stats(sock: str) -> dict:
    """The daemon's `kvtier stats`, read through a probe connection."""
    from kvtier import Fingerprint, KvtierClient

    c = KvtierClient(sock, Fingerprint(model="probe", dtype="x", kv_layout="x"), "probe", timeout=3.0)
    try:
        return c.stats()
    finally:
        c.close()


def wait_daemon_stats(sock: str, ready, timeout: float) -> dict:
    """The daemon's stats once ready(stats) holds (the daemon counts after it answered)."""
    deadline = time.monotonic() + timeout
    while not ready(st := daemon_stats(sock)):
        assert time.monotonic() < deadline, st
        time.sleep(0.02)
    return st


def daemon_lookups(sock: str) -> int:
    """Lookups the daemon has answered (kvtier stats)."""
    return int(daemon_stats(sock)["counters"]["lookups"])


def test_tp2_rank_1_alone_never_gets_rank_0s_chunks(daemon, alloc):
    """Same tp_size=2 on both sides, only the rank differs: rank 0 stored, a rank-1 namespace misses;
    once rank 1's shard is gone, the one Lookup for both ranks is a miss (rank 0's alone is no hit)."""
    from kvtier import KvtierClient

    a = MiniEngine(daemon.socket, alloc, "A", tp_size=2)
    try:
        a.run(req("r1", PREFIX + [1] * 30))
        fp = a.workers[0]._worker.client.fingerprint
        hits = {}
        for rank in (0, 1):
            c = KvtierClient(daemon.socket, fp.replace(tp_rank=rank), "probe", timeout=3.0)
            try:
                hits[rank] = c.lookup(tokens=PREFIX, no_lease=True).hit_chunks
            finally:
                c.close()
        assert hits == {0: 3, 1: 3}
        a.close()
        a = MiniEngine(daemon.socket, alloc, "A2", tp_size=2)
        # rank 1's shard dropped (invalidated): rank 0's chunks must not stand in for it
        c = KvtierClient(daemon.socket, fp.replace(tp_rank=1), "probe", timeout=3.0)
        try:
            c.invalidate()
        finally:
            c.close()
        assert a.run(req("r2", PREFIX + [2] * 30)).external_tokens == 0
    finally:
        a.close()


def test_tp_rank_that_cannot_be_read_is_an_error_naming_what_is_missing(tmp_path):
    from types import SimpleNamespace

    from kvtier.vllm import KVTierConnector
    from kvtier.vllm.compat import Role
    from kvtier.vllm.settings import RankUnknown
    from vllm_sim import vllm_config

    cfg = vllm_config(str(tmp_path / "x.sock"), tp_size=2)
    with pytest.raises(RankUnknown, match="kvtier_tp_rank"):
        KVTierConnector(cfg, Role.WORKER, SimpleNamespace(num_blocks=8))
    cfg = vllm_config(str(tmp_path / "x.sock"), tp_size=2, extra={"kvtier_tp_rank": 2})
    with pytest.raises(RankUnknown, match="outside"):
        KVTierConnector(cfg, Role.WORKER, SimpleNamespace(num_blocks=8))


@pytest.mark.parametrize("vllm_init,fails", [(None, False), ("raise ImportError('libcudart.so.12: cannot open')", True),
                                              ("", True)],
                         ids=["absent", "broken-install", "no-base-module"])
def test_vllm_import_failure_other_than_absent_is_raised(tmp_path, vllm_init, fails):
    """vLLM missing: the stand-ins. vLLM present but failing to import (or without the
    connector base module): the error surfaces instead of silently using the stand-ins."""
    import os
    import subprocess
    import sys

    if vllm_init is not None:
        (tmp_path / "vllm").mkdir()
        (tmp_path / "vllm" / "__init__.py").write_text(vllm_init + "\n")
    pkg = os.path.join(os.path.dirname(__file__), "..", "..", "integrations", "python")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), pkg])}
    r = subprocess.run([sys.executable, "-c", "import kvtier.vllm as v; print(v.HAVE_VLLM)"],
                       capture_output=True, text=True, env=env, timeout=60)
    if fails:
        assert r.returncode != 0 and ("libcudart" in r.stderr or "vllm.distributed" in r.stderr), r.stderr
    else:
        assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


# -- the overrides current vLLM expects -----------------------------------------------------------

@pytest.mark.parametrize("role", ["kv_both", "kv_producer", "kv_consumer"])
def test_requires_kv_delivery_is_false_for_a_best_effort_cache(tmp_path, role):
    from types import SimpleNamespace

    from kvtier.vllm import KVTierConnector
    from kvtier.vllm.compat import Role
    from vllm_sim import vllm_config

    c = KVTierConnector(vllm_config(str(tmp_path / "x.sock"), role=role), Role.SCHEDULER,
                        SimpleNamespace(num_blocks=8))
    try:
        assert c.requires_kv_delivery is False
    finally:
        c.shutdown()


def test_handle_preemptions_takes_the_metadata_or_a_set_and_waits_for_an_inflight_load(daemon, alloc):
    """vLLM calls handle_preemptions every step with the metadata (older: a set of ids). A
    preempted request's blocks are reused right after: a load of ours into them must be over."""
    from vllm_sim import CachedRequestData, KVCacheBlocks, SchedulerOutput

    a = MiniEngine(daemon.socket, alloc, "A")
    b = MiniEngine(daemon.socket, alloc, "B")
    try:
        a.run(req("r1", PREFIX + [4] * 20))
        r = req("r2", PREFIX + [3] * 20)
        ext, _ = matched_tokens(b.scheduler, r, 0)
        assert ext == 768
        table = [b.free.pop(0) for _ in range(-(-len(r.prompt_token_ids) // BLOCK))]
        b.scheduler.update_state_after_alloc(r, KVCacheBlocks(table), ext)
        so = SchedulerOutput([], CachedRequestData(), {}, set(), preempted_req_ids={"r2"})
        meta = b.scheduler.build_connector_meta(so)
        assert meta.preempted == {"r2"} and len(meta.loads) == 1
        w = b.worker
        w.bind_connector_metadata(meta)
        w.start_load_kv(b.forward_context)
        w.handle_preemptions(meta)
        ld = w._worker._loads["r2"]
        assert ld.pending is None or ld.pending.done(), "the load must be over before the blocks are reused"
        w.handle_preemptions({"r2"})          # the older set-of-ids form
        w.handle_preemptions(None)
        w.clear_connector_metadata()
        b.scheduler.request_finished(r, (table,))
    finally:
        a.close()
        b.close()


def test_a_preempted_and_resumed_request_still_saves_correct_kv(daemon, alloc):
    a = MiniEngine(daemon.socket, alloc, "A")
    b = MiniEngine(daemon.socket, alloc, "B")
    try:
        from vllm_sim import CachedRequestData, SchedulerOutput
        so = SchedulerOutput([], CachedRequestData(), {}, set(), preempted_req_ids={"r1"})
        so.kv_connector_metadata = a.scheduler.build_connector_meta(so)
        a.worker.bind_connector_metadata(so.kv_connector_metadata)
        a.worker.handle_preemptions(so.kv_connector_metadata)
        a.worker.clear_connector_metadata()
        a.run(req("r1", PREFIX + [4] * 20))
        s = b.run(req("r2", PREFIX + [3] * 20))
        assert s.external_tokens == 768 and s.load_errors == set()
        assert all(torch.equal(g, w) for g, w in zip(b.token_kv(s.block_table, 700),
                                                     b.expected_kv(PREFIX, 700)))
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("publishable,stored", [(20, 1), (0, 0), (None, 3)])
def test_never_publishes_past_num_publishable_block_hashes(daemon, alloc, publishable, stored):
    a = MiniEngine(daemon.socket, alloc, "A")
    b = MiniEngine(daemon.socket, alloc, "B")
    try:
        r = req("r1", PREFIX + [4] * 20)
        if publishable is not None:
            r.num_publishable_block_hashes = publishable   # 20 blocks of 16 = 320 tokens: one chunk
        s = a.run(r)
        assert a.worker._worker.stats["stored_chunks"] == stored
        assert s.finished_sending == ({"r1"} if stored else set())
        assert b.run(req("r2", PREFIX + [3] * 20)).external_tokens == stored * 256
    finally:
        a.close()
        b.close()


def test_connector_stats_through_vllms_stats_hooks(daemon, alloc):
    from kvtier.vllm import KVTierConnector
    from kvtier.vllm.stats import KVTierConnectorStats

    a = MiniEngine(daemon.socket, alloc, "A")
    b = MiniEngine(daemon.socket, alloc, "B")
    try:
        a.run(req("r1", PREFIX + [4] * 20))
        ws = a.worker.get_kv_connector_stats()
        assert ws is not None and ws.data["stored_chunks"] == 3 and ws.data["saves"] == 1
        assert ws.data["save_time_s"] > 0
        assert a.worker.get_kv_connector_stats() is None, "each collection starts a new interval"
        b.run(req("r2", PREFIX + [3] * 20))
        ss = b.scheduler.get_kv_connector_stats()
        assert ss.data["lookups"] == 1 and ss.data["hit_tokens"] == 768
        assert ss.data["hit_chunks_host"] == 3
        wb = b.worker.get_kv_connector_stats()
        assert wb.data["loaded_chunks"] == 3 and wb.data["loads"] == 1 and wb.data["load_time_s"] > 0
        # vLLM rebuilds it from its data dict in another process and aggregates workers
        rebuilt = KVTierConnector.build_kv_connector_stats(data=dict(wb.data))
        assert isinstance(rebuilt, KVTierConnectorStats)
        total = rebuilt.aggregate(KVTierConnector.build_kv_connector_stats(data=dict(wb.data)))
        assert total.reduce()["loaded_chunks"] == 6 and not total.is_empty()
        assert KVTierConnector.build_kv_connector_stats().is_empty()
        special = req("r3", PREFIX)
        special.lora_request = object()
        b.run(special)
        st = b.scheduler.get_kv_connector_stats().data
        assert st["bypassed"] == 1 and st["bypassed_lora_unnamed"] == 1
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("extra", [{}, {"save_only_first_rank": True}], ids=["default", "lmcache-key"])
def test_mla_at_tp2_stores_one_copy_that_every_rank_loads(daemon, alloc, extra):
    from kvtier import KvtierClient

    cfg = dict(tp_size=2, mla=True, extra={"kvtier_kv_layout": "mla-NHD-x2", **extra})
    a = MiniEngine(daemon.socket, alloc, "A", **cfg)
    b = MiniEngine(daemon.socket, alloc, "B", **cfg)
    try:
        s1 = a.run(req("r1", PREFIX + [1, 2, 3] * 40))
        assert s1.finished_sending == {"r1"}, "rank 1 skips its save but still reports it"
        assert [w._worker.stats["stored_chunks"] for w in a.workers] == [4, 0]
        fp = a.workers[0]._worker.client.fingerprint
        assert fp.tp_rank == 0 and a.workers[1]._worker.client.fingerprint == fp
        c = KvtierClient(daemon.socket, fp.replace(tp_rank=1), "probe", timeout=3.0)
        try:
            assert c.lookup(tokens=PREFIX, no_lease=True).hit_chunks == 0, "no second copy"
        finally:
            c.close()
        r2 = req("r2", PREFIX + [9, 8] * 30)
        lookups = daemon_lookups(daemon.socket)
        s = b.run(r2)
        assert s.external_tokens == 768 and s.load_errors == set()
        assert daemon_lookups(daemon.socket) == lookups + 1, "one Lookup answers for both ranks"
        assert len(b.scheduler._scheduler.clients) == 1
        for idx in (0, 1):
            assert b.workers[idx]._worker.stats["loaded_chunks"] == 3
            for pos in range(0, 768, 13):
                assert all(torch.equal(g, w) for g, w in zip(b.token_kv(s.block_table, pos, idx),
                                                             b.expected_kv(r2.prompt_token_ids, pos, idx)))
    finally:
        a.close()
        b.close()


def test_mla_one_copy_can_be_turned_off(daemon, alloc):
    cfg = dict(tp_size=2, mla=True, extra={"kvtier_kv_layout": "mla-NHD-x2", "save_only_first_rank": False})
    a = MiniEngine(daemon.socket, alloc, "A", **cfg)
    try:
        a.run(req("r1", PREFIX + [1] * 30))
        assert [w._worker.stats["stored_chunks"] for w in a.workers] == [4, 4]
    finally:
        a.close()


# -- keys covering what vLLM's block hash covers -------------------------------------------------

def _with(r, **attrs):
    for k, v in attrs.items():
        setattr(r, k, v)
    return r


def _image(h, offset=10, length=300):
    from types import SimpleNamespace
    return SimpleNamespace(identifier=h, mm_position=SimpleNamespace(offset=offset, length=length))


def _lora(name):
    from types import SimpleNamespace
    return SimpleNamespace(lora_name=name, lora_int_id=1)


@pytest.mark.parametrize("first,same,other", [
    ({"cache_salt": "tenant-a"}, {"cache_salt": "tenant-a"}, {"cache_salt": "tenant-b"}),
    ({"lora_request": _lora("sql")}, {"lora_request": _lora("sql")}, {"lora_request": _lora("chat")}),
    ({"mm_features": [_image("img-1")]}, {"mm_features": [_image("img-1")]}, {"mm_features": [_image("img-2")]}),
    ({"mm_features": [_image("img-1")]}, {"mm_features": [_image("img-1")]}, {"mm_features": [_image("img-1", 20)]}),
], ids=["salt", "lora", "image", "image-moved"])
def test_extra_keys_same_ones_hit_other_ones_and_none_miss(daemon, alloc, first, same, other):
    a = MiniEngine(daemon.socket, alloc, "A")
    b = MiniEngine(daemon.socket, alloc, "B")
    try:
        s1 = a.run(_with(req("r1", PREFIX + [1] * 30), **first))
        assert s1.finished_sending == {"r1"}, "a keyed request is saved"
        assert b.run(_with(req("r2", PREFIX + [2] * 30), **other)).external_tokens == 0
        assert b.run(req("r3", PREFIX + [2] * 30)).external_tokens == 0, "no extra keys: another chain"
        r4 = _with(req("r4", PREFIX + [3] * 30), **same)
        s4 = b.run(r4)
        assert s4.external_tokens == 768 and s4.load_errors == set()
        assert all(torch.equal(g, w) for g, w in zip(b.token_kv(s4.block_table, 600),
                                                     b.expected_kv(r4.prompt_token_ids, 600)))
        assert b.scheduler.get_kv_connector_stats().data["bypassed"] == 0
    finally:
        a.close()
        b.close()


def test_a_daemon_that_ignores_seeds_makes_keyed_requests_bypass(daemon, alloc, monkeypatch):
    """An older daemon would drop ChunkAddress.seed and share a salted prompt with everyone."""
    a = MiniEngine(daemon.socket, alloc, "A")
    try:
        for c in a.scheduler._scheduler.clients.values():
            c.connect()
            monkeypatch.setattr(c.hello_ok, "address_seed", False)
        s = a.run(_with(req("r1", PREFIX + [1] * 30), cache_salt="t"))
        assert s.external_tokens == 0 and s.finished_sending == set()
        st = a.scheduler.get_kv_connector_stats().data
        assert st["bypassed"] == 1 and st["bypassed_daemon_without_seed"] == 1
        assert a.run(req("r2", PREFIX + [1] * 30)).finished_sending == {"r2"}, "unkeyed requests go on"
    finally:
        a.close()


def test_connector_stats_count_disk_hits_after_a_daemon_restart(daemon_factory, alloc, tmp_path):
    """A daemon restarted over a warm local_disk: the second engine's hit is
    counted as disk chunks in vLLM's stats, not as host or Valkey ones."""
    disk = tmp_path / "disk"
    disk.mkdir()
    d = daemon_factory(f"local_disk: file://{disk}/\nmax_local_disk_size: 0.1\n")
    a = MiniEngine(d.socket, alloc, "A")
    try:
        a.run(req("r1", PREFIX + [4] * 20))
    finally:
        a.close()
    wait_daemon_stats(d.socket, lambda st: st["disk"]["entries"] >= 3, 20.0)
    d.kill()
    d.start()
    b = MiniEngine(d.socket, alloc, "B")
    try:
        s = b.run(req("r2", PREFIX + [3] * 20))
        assert s.external_tokens == 768 and s.load_errors == set()
        st = b.scheduler.get_kv_connector_stats().data
        assert (st["hit_chunks_host"], st["hit_chunks_disk"], st["hit_chunks_valkey"]) == (0, 3, 0)
    finally:
        b.close()


def test_a_reconnect_during_a_load_never_waits_in_the_step(daemon, alloc):
    """The worker's connection drops and the daemon is paused (SIGSTOP) just before a step
    that starts a load: start_load_kv must not dial (a Hello to a paused daemon waits for the
    full timeout). The dial runs on a thread, the load is held until it is done and then
    issued: no error, the KV equals the producer's."""
    import threading
    import time

    a = MiniEngine(daemon.socket, alloc, "A")
    b = MiniEngine(daemon.socket, alloc, "B", extra={"kvtier_timeout_s": 3.0})
    timing: dict[str, float] = {}

    def drop_and_pause():
        b.workers[0]._worker.client._conn.close()
        daemon.pause()
        threading.Timer(1.0, daemon.resume).start()
        timing["before"] = time.monotonic()

    def started():
        timing["after"] = time.monotonic()

    try:
        a.run(req("r1", PREFIX + [5] * 100))
        r2 = req("r2", PREFIX + [6] * 50)
        s = b.run(r2, before_worker=drop_and_pause, after_start_load=started)
        assert timing["after"] - timing["before"] < 0.5, "start_load_kv waited for the dial"
        assert s.external_tokens == 768
        assert s.load_errors == set(), "the held load is issued once the dial is done"
        for pos in (0, 255, 500, 767):
            assert all(torch.equal(g, w) for g, w in zip(b.token_kv(s.block_table, pos),
                                                         b.expected_kv(r2.prompt_token_ids, pos)))
    finally:
        daemon.resume()
        a.close()
        b.close()
