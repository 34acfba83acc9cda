"""Scheduler-side guards of KVTierConnector against a real kvtierd: a salted request is never
looked up or saved unseeded where the daemon does not honour ChunkAddress.seed, and a Lookup
still out when the daemon's health failed is never reused, its leases released once it lands.

An older daemon is OldDaemon (old_daemon.py): a relay in front of the real daemon whose HelloOk
lacks address_seed and which drops ChunkAddress.seed on the way in, as such a daemon did. So a
guard that let a seeded request through shows up as what a user would see: the salted request
hitting another tenant's KV, or its KV served to unsalted requests. (Clearing address_seed on
the clients' HelloOk alone would leave a daemon that still honours the seed: a seeded save let
through would then sit under the seeded address, and nothing a user checks would change.)"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Iterator

import pytest
import torch

from kvtier import KvtierClient, proto
from kvtier.client import address
from kvtier.hashing import chunk_hashes
from kvtier.refengine import ModelConfig, RefEngine
from kvtier.shm import ShmAllocator
from kvtier.vllm.keys import request_seed
from kvtier.vllm.scheduler import SLIDING_CHAIN_ROOT
from old_daemon import OldDaemon, wait_until
from test_vllm_connector import PREFIX, daemon_stats, req, wait_daemon_stats
from vllm_sim import MiniEngine

OTHER = [(i * 104729 + 7) % 32000 for i in range(1000)]   # never stored unseeded before a check
SALT = "tenant-a"
SCHED = "vllm-scheduler"
# a hybrid model: layers 1 and 3 slide over 100 tokens (two KV cache groups)
HYBRID = ModelConfig(layers=4, sliding_window=100, sliding_layers=(1, 3))
P1 = [(i * 613 + 5) % 1024 for i in range(1000)]
P2 = P1[:900] + [(i * 11) % 1024 for i in range(100)]


@pytest.fixture
def alloc() -> Iterator[ShmAllocator]:
    with ShmAllocator() as a:
        yield a


@pytest.fixture
def old(daemon: Any) -> Iterator[OldDaemon]:
    tmp = tempfile.mkdtemp(prefix="kvt-old-")   # a short path: sun_path holds 108 bytes
    o = OldDaemon(daemon.socket, os.path.join(tmp, "old.sock"))
    try:
        yield o
    finally:
        o.close()
        shutil.rmtree(tmp, ignore_errors=True)


def salted(rid: str, tokens: list[int]) -> Any:
    r = req(rid, tokens)
    r.cache_salt = SALT
    return r


def answer(connector: Any, request: Any, computed: int = 0, timeout: float = 3.0) -> tuple[int, bool]:
    """get_num_new_matched_tokens asked again while it answers None, as vLLM asks it each step."""
    deadline = time.monotonic() + timeout
    while True:
        ext, load_async = connector.get_num_new_matched_tokens(request, computed)
        if ext is not None:
            return ext, load_async
        assert time.monotonic() < deadline, f"{request.request_id} still undecided after {timeout} s"
        time.sleep(0.002)


def hit_chunks(sock: str, fp: Any, tokens: Any = None, keys: Any = None, seed: bytes = b"") -> int:
    """What the daemon holds of a prompt (or of chunk keys) under `seed`, read without a lease."""
    c = KvtierClient(sock, fp, "probe", timeout=3.0)
    try:
        msg = proto.Lookup(address=address(tokens, keys, seed), no_lease=True)
        return c.call(msg, "lookup_ok").hit_chunks
    finally:
        c.close()


def drop_scheduler_connection(old: OldDaemon, sched: Any) -> None:
    """The daemon drops the scheduler's connections; their reconnect's HelloOk is held, so that
    whether the daemon honours seeds stays unknown until old.release_hello()."""
    old.hold_hello(SCHED)
    old.drop(SCHED)
    wait_until(lambda: not any(c.connected for c in sched.clients.values()), 3.0,
               "the scheduler saw its connection closed")


def wait_connected(sched: Any) -> None:
    wait_until(lambda: all(c.connected for c in sched.clients.values()), 3.0, "the scheduler reconnected")


# -- the seed guard ------------------------------------------------------------------------------

def test_an_old_daemon_never_serves_nor_stores_a_salted_request(daemon, old, alloc):
    """Through an old daemon a salted request is a miss counted as a bypass, even where its
    tokens are cached unsalted, and is not saved: an unsalted request of its tokens misses.
    Against the current daemon the same salted request is saved and hit by its own salt only."""
    u = MiniEngine(daemon.socket, alloc, "U")
    s = MiniEngine(old.socket, alloc, "S")
    n = MiniEngine(daemon.socket, alloc, "N")
    fp = u.workers[0]._worker.client.fingerprint
    try:
        assert u.run(req("u1", PREFIX + [1] * 30)).finished_sending == {"u1"}
        s1 = salted("s1", PREFIX + [2] * 30)
        assert answer(s.scheduler, s1) == (0, False), "another tenant's (unsalted) KV was offered"
        assert s.run(s1).external_tokens == 0
        s2 = salted("s2", OTHER)
        r = s.run(s2)
        assert r.external_tokens == 0 and r.finished_sending == set() and not s.held, "a salted save"
        assert s.workers[0]._worker.stats["stored_chunks"] == 0
        st = s.scheduler.get_kv_connector_stats().data
        assert st["bypassed"] == 2 and st["bypassed_daemon_without_seed"] == 2
        assert wait_daemon_stats(daemon.socket, lambda d: d["bypassed"].get("daemon_without_seed") == 2,
                                 3.0)["bypassed"] == {"daemon_without_seed": 2}
        assert old.seeded == [], "a seed went to a daemon that ignores it"
        assert hit_chunks(daemon.socket, fp, tokens=OTHER) == 0, "the salted KV is under the unsalted address"

        # the current daemon (HelloOk.address_seed): the same salted request is looked up and saved
        n2 = salted("n2", OTHER)
        assert n.run(n2).finished_sending == {"n2"}
        assert hit_chunks(daemon.socket, fp, tokens=OTHER, seed=request_seed(n2)[0]) == 3
        nst = n.scheduler.get_kv_connector_stats()
        assert nst is None or nst.data["bypassed"] == 0, "not bypassed"
        assert daemon_stats(daemon.socket)["bypassed"] == {"daemon_without_seed": 2}
        same = salted("u2", OTHER[:900] + [3] * 50)
        got = u.run(same)
        assert got.external_tokens == 768 and got.load_errors == set()
        assert all(torch.equal(g, w) for g, w in zip(u.token_kv(got.block_table, 700),
                                                     u.expected_kv(same.prompt_token_ids, 700)))
        assert u.run(req("u3", OTHER[:900] + [4] * 50)).external_tokens == 0, "unsalted: another chain"
    finally:
        u.close()
        s.close()
        n.close()


def test_a_salted_request_is_not_looked_up_when_the_old_daemons_hello_lands_mid_call(daemon, old, alloc):
    """The scheduler's reconnect to an old daemon completes between the bypass check (seeds
    unknown: not connected) and the Lookup: the call answers "not yet" instead of sending the
    seed to that daemon, and the next one bypasses. The tokens are cached unsalted, so a Lookup
    that went out would have offered them."""
    u = MiniEngine(daemon.socket, alloc, "U")
    s = MiniEngine(old.socket, alloc, "S")
    sched = s.scheduler._scheduler
    try:
        u.run(req("u1", PREFIX + [1] * 30))
        drop_scheduler_connection(old, sched)
        s.idle_step()                    # build_connector_meta starts the reconnect: its Hello is held
        dialled = sched._dialled

        def hello_lands_now() -> bool:
            # the one thread interleaving this test is about, made deterministic: the held
            # HelloOk is delivered and taken in just before the scheduler polls its reconnect
            sched._dialled = dialled
            old.release_hello()
            wait_connected(sched)
            return dialled()

        sched._dialled = hello_lands_now
        s1 = salted("s1", PREFIX + [2] * 30)
        assert s.scheduler.get_num_new_matched_tokens(s1, 0) == (None, False)
        assert sched._dialled == dialled, "the Lookup path was reached"
        assert answer(s.scheduler, s1) == (0, False), "another tenant's (unsalted) KV was offered"
        st = s.scheduler.get_kv_connector_stats().data
        assert st["bypassed"] == 1 and st["bypassed_daemon_without_seed"] == 1
        assert old.seeded == [], "a seeded Lookup went to a daemon that ignores seeds"
    finally:
        old.release_hello()
        u.close()
        s.close()


def test_a_salted_request_is_not_saved_while_the_daemons_seed_support_is_unknown(daemon, old, alloc):
    """The scheduler's connection drops while a salted request computes and its reconnect to the
    old daemon is not done when the request finishes: no save (the worker, still connected,
    would have stored it unseeded), so an unsalted request of its tokens misses."""
    s = MiniEngine(old.socket, alloc, "S")
    sched = s.scheduler._scheduler
    fp = s.workers[0]._worker.client.fingerprint
    try:
        r = s.run(salted("s1", OTHER), before_worker=lambda: drop_scheduler_connection(old, sched))
        assert r.external_tokens == 0 and r.finished_sending == set() and not s.held
        old.release_hello()
        wait_connected(sched)
        s.idle_step()
        assert s.workers[0]._worker.stats["stored_chunks"] == 0
        assert old.seeded == [], "a seeded Store went to a daemon that ignores seeds"
        assert hit_chunks(daemon.socket, fp, tokens=OTHER) == 0, "the salted KV is under the unsalted address"
        assert s.run(req("u1", OTHER[:900] + [4] * 50)).external_tokens == 0
    finally:
        old.release_hello()
        s.close()


def hybrid(sock: str) -> RefEngine:
    """Prefill 256 tokens a step: each step completes one sliding-window chunk (a step save)."""
    return RefEngine(sock, model=HYBRID, num_blocks=300, token_budget=256,
                     extra={"kvtier_timeout_s": 5.0, "kvtier_retry_interval_s": 0.2})


def run_to_end(e: RefEngine, r: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while r.status != "FINISHED":
        e.step()
        assert time.monotonic() < deadline, f"{r.request_id} not finished in {timeout} s"


def test_sliding_window_step_saves_of_a_salted_request_wait_for_the_daemons_seed_support(daemon, old):
    """A hybrid model prefills a salted prompt 256 tokens a step through an old daemon; after the
    first step the scheduler's connection drops and its reconnect is not done until the prompt
    is computed. No sliding-window chunk is stored during those steps, nor any chunk at the
    end: the daemon holds nothing of the prompt unsalted. With the current daemon the same
    salted prompt is stored (under its seed only) and hit by the same salt, missed without it."""
    b = hybrid(old.socket)
    sched = b.scheduler._scheduler
    full_fp, sw_fp = (side.client.fingerprint for side in b.worker._worker.sides)
    keys = chunk_hashes(SLIDING_CHAIN_ROOT, P1, 256)[:3]
    try:
        r = b.add_request("s1", P1, cache_salt=SALT)
        b.step()
        assert r.num_computed_tokens == 256 and r.external_tokens == 0
        drop_scheduler_connection(old, sched)
        run_to_end(b, r, 4.0)            # inside the reconnect's 5 s Hello timeout
        old.release_hello()
        wait_connected(sched)
        b.drain(timeout_s=3.0)
        assert [side.stats["stored_chunks"] for side in b.worker._worker.sides] == [0, 0]
        assert old.seeded == [], "a seeded Store went to a daemon that ignores seeds"
    finally:
        old.release_hello()
        b.close()
    assert [hit_chunks(daemon.socket, sw_fp, keys=[k]) for k in keys] == [0, 0, 0], \
        "sliding-window chunks of the salted prompt under unsalted keys"
    assert hit_chunks(daemon.socket, full_fp, tokens=P1) == 0

    a = hybrid(daemon.socket)
    try:
        a.generate("a1", P1, cache_salt=SALT)
        a.drain(timeout_s=5.0)
        assert [side.stats["stored_chunks"] for side in a.worker._worker.sides] == [3, 3]
    finally:
        a.close()
    assert [hit_chunks(daemon.socket, sw_fp, keys=[k]) for k in keys] == [0, 0, 0]
    c = hybrid(daemon.socket)
    try:
        hit = c.generate("c1", P2, cache_salt=SALT)
        assert hit.external_tokens == 768 and hit.load_error_blocks == set()
        assert c.generate("c2", P2).external_tokens == 0, "unsalted: another chain"
    finally:
        c.close()


# -- a Lookup outstanding when the health failed -------------------------------------------------

def test_a_lookup_outstanding_when_health_fails_is_asked_anew_and_its_leases_released(daemon, alloc):
    """The daemon hangs (SIGSTOP) with two requests' Lookups unanswered; one times out, which
    fails the scheduler's health, and the other is asked about during the back-off. Once the
    daemon answers again, both answers' leases are released at the next step, and the request
    asked about again gets a new Lookup (not the old answer, sent before the back-off) and its
    full 768-token hit."""
    a = MiniEngine(daemon.socket, alloc, "A")
    b = MiniEngine(daemon.socket, alloc, "B", extra={"kvtier_lookup_timeout_s": 1.0, "kvtier_lookup_wait_ms": 5,
                                                     "kvtier_retry_interval_s": 1.0})
    sched = b.scheduler._scheduler
    try:
        a.run(req("a1", PREFIX + [1] * 30))
        before = daemon_stats(daemon.socket)
        assert before["leases"] == 0
        r1, r2 = req("r1", PREFIX + [2] * 30), req("r2", PREFIX + [3] * 30)
        daemon.pause()
        try:
            assert b.scheduler.get_num_new_matched_tokens(r1, 0) == (None, False)
            assert b.scheduler.get_num_new_matched_tokens(r2, 0) == (None, False)
            assert answer(b.scheduler, r1) == (0, False), "r1's Lookup timed out: a miss"
            assert not sched.health.ready(), "the timeout failed the health"
            assert b.scheduler.get_num_new_matched_tokens(r2, 0) == (0, False), "a miss while backing off"
        finally:
            daemon.resume()
        lookups = int(before["counters"]["lookups"])
        wait_daemon_stats(daemon.socket, lambda st: st["counters"]["lookups"] == lookups + 2
                          and st["leases"] == 2, 3.0)
        deadline = time.monotonic() + 3.0
        while daemon_stats(daemon.socket)["leases"]:
            assert time.monotonic() < deadline, "the leases of the Lookups given up on were kept"
            b.idle_step()
            time.sleep(0.01)
        wait_until(sched.health.ready, 3.0, "the back-off ended")
        assert answer(b.scheduler, r2) == (768, True)
        deadline = time.monotonic() + 3.0
        while (n := daemon_stats(daemon.socket)["counters"]["lookups"]) < lookups + 3:
            assert time.monotonic() < deadline, "no new Lookup: the one sent before the back-off was reused"
            time.sleep(0.01)
        assert n == lookups + 3
        s = b.run(r2)
        assert s.external_tokens == 768 and s.load_errors == set()
        for pos in (0, 300, 767):
            assert all(torch.equal(g, w) for g, w in zip(b.token_kv(s.block_table, pos),
                                                         b.expected_kv(r2.prompt_token_ids, pos)))
        assert wait_daemon_stats(daemon.socket, lambda st: st["leases"] == 0, 3.0)["leases"] == 0
    finally:
        daemon.resume()
        a.close()
        b.close()
