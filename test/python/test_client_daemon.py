"""The Python client against a real kvtierd: Hello, inline Put/Get/Exists,
Lookup/Store/Retrieve inline, leases across connections, pipelining, timeouts,
reconnects and namespace isolation."""
import logging
import os
import socket
import threading
import time

import pytest

from kvtier import proto
from kvtier.client import KvtierClient
from kvtier.errors import DaemonUnavailable, KvtierError, RequestTimeout
from kvtier.hashing import Fingerprint
from kvtier.session import Session, release_lease

FP = Fingerprint(model="test/model", dtype="float16", kv_layout="kv-NHD-x2", chunk_size=256, block_size=16)


def client(d, fp=FP, **kw):
    return KvtierClient(d.socket, fp, "pytest", timeout=5.0, **kw)


def test_hello_returns_namespace_id(daemon):
    with client(daemon) as c:
        ok = c.connect()
        assert ok.namespace_id == FP.namespace_id()
        assert ok.chunk_size == 256
        c.ping()


def test_chunk_size_mismatch_is_refused(daemon):
    with client(daemon, FP.replace(chunk_size=128)) as c:
        with pytest.raises(KvtierError) as e:
            c.connect()
        assert e.value.code == "KVT_NAMESPACE_MISMATCH"


def test_inline_put_get_exists(daemon):
    with client(daemon) as c:
        c.put(b"page-1", b"\x01" * 1000)
        c.put(b"page-2", bytes(range(256)) * 4)
        assert c.get(b"page-1") == b"\x01" * 1000
        assert c.get(b"page-2") == bytes(range(256)) * 4
        assert c.get(b"nope") is None
        ok = c.exists([b"page-1", b"page-2", b"nope", b"page-1"])
        assert ok.prefix_found == 2
        assert list(ok.found) == [True, True, False, True]


def test_pipelined_requests_match_their_ids(daemon):
    with client(daemon) as c:
        pend = [c.submit(proto.Put(key=b"k%d" % i, value=b"v%d" % i)) for i in range(200)]
        for p in pend:
            p.wait(5.0)
        gets = [c.submit(proto.Get(key=b"k%d" % i)) for i in range(200)]
        assert [p.wait(5.0)[0][1].value for p in gets] == [b"v%d" % i for i in range(200)]


def test_store_lookup_retrieve_inline_with_lease_from_another_connection(daemon):
    tokens = list(range(1000, 1000 + 700))  # 2 full chunks + partial
    chunks = [bytes([i + 1]) * 4096 for i in range(2)]
    with client(daemon) as a, client(daemon) as b:
        (f1, copied), (f2, committed) = a.store_inline(tokens, chunks).wait(5.0)
        assert (f1, f2) == ("store_copied", "store_committed")
        assert copied.stored_chunks + copied.present_chunks == 2
        ok = a.lookup(tokens=tokens + [1, 2, 3], lease_ttl_ms=10000)
        assert (ok.hit_tokens, ok.hit_chunks) == (512, 2)
        assert ok.lease_id != 0
        done = b.retrieve_inline(ok.lease_id, 0, 2)
        assert list(done.chunks) == chunks
        miss = a.lookup(tokens=[7] + tokens[1:], no_lease=True)
        assert (miss.hit_tokens, miss.lease_id) == (0, 0)
        a.release_lease(ok.lease_id, wait=True)


def test_other_namespaces_never_see_the_chunks(daemon):
    tokens = list(range(512))
    with client(daemon) as a:
        a.store_inline(tokens, [b"a" * 64, b"b" * 64]).wait(5.0)
        a.put(b"key", b"value")
        assert a.lookup(tokens=tokens, no_lease=True).hit_chunks == 2
    for other in [FP.replace(model="other"), FP.replace(dtype="bfloat16"), FP.replace(kv_layout="kv-HND-x2"),
                  FP.replace(tp_rank=1, tp_size=2), FP.replace(block_size=32), FP.replace(cache_salt="t2")]:
        with client(daemon, other) as c:
            assert c.lookup(tokens=tokens, no_lease=True).hit_chunks == 0, other
            assert c.get(b"key") is None, other


def test_daemon_not_running_raises_daemon_unavailable(tmp_path):
    c = KvtierClient(str(tmp_path / "absent.sock"), FP, connect_timeout=0.2)
    with pytest.raises(DaemonUnavailable):
        c.lookup(tokens=list(range(300)))


def test_session_clients_and_lease_release(daemon, tmp_path):
    """The integrations' factory: clients with the session's timeouts (a dial capped at 1 s)
    sharing one Health; release_lease sends over a live connection and is a quiet no-op
    without one."""
    s = Session(daemon.socket, timeout=5.0, retry_interval=0.5, log=logging.getLogger("kvtier.test"))
    c = s.client(FP, "pytest-session")
    assert (c.socket_path, c.timeout, c.connect_timeout, c.client_kind) == (daemon.socket, 5.0, 1.0, "pytest-session")
    assert s.health.retry_interval == 0.5 and s.health.what == f"kvtierd at {daemon.socket}"
    assert Session(daemon.socket, 0.3, 1.0, logging.getLogger("kvtier.test")).client(FP, "x").connect_timeout == 0.3
    release_lease(None, 7)
    release_lease(c, 7)                  # not connected yet: nothing sent
    assert not c.connected
    tokens = list(range(512))
    with c:
        c.store_inline(tokens, [b"\x01" * 64] * 2).wait(5.0)
        lease = c.lookup(tokens=tokens, lease_ttl_ms=60000).lease_id
        assert lease
        release_lease(c, lease)
        c.ping()                         # the ReleaseLease went before it on the one connection
    release_lease(c, lease)              # closed: no-op, never raises


def test_request_timeout_on_a_silent_peer(tmp_path):
    path = str(tmp_path / "silent.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    held = []
    threading.Thread(target=lambda: held.append(srv.accept()), daemon=True).start()
    c = KvtierClient(path, FP, timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(RequestTimeout):
        c.connect()
    assert time.monotonic() - t0 < 2.0
    srv.close()


def test_reconnects_after_daemon_restart(daemon):
    with client(daemon) as c:
        c.put(b"x", b"1")
        daemon.kill()
        with pytest.raises(DaemonUnavailable):
            c.get(b"x")
        daemon.start()
        c.put(b"y", b"2")  # dials again, Hello again
        assert c.get(b"y") == b"2"
        assert c.reconnects == 1


def test_stats_is_json(daemon):
    with client(daemon) as c:
        assert isinstance(c.stats(), dict)


def test_one_client_shared_by_threads(daemon):
    with client(daemon) as c:
        errors = []

        def work(t):
            try:
                for i in range(50):
                    key = b"t%d-%d" % (t, i)
                    c.put(key, key * 3)
                    assert c.get(key) == key * 3
            except Exception as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []


def test_lookup_names_disk_hits_after_a_restart(daemon_factory, tmp_path):
    """A restarted daemon's host tier is empty and its local_disk warm: the
    hits are disk_chunks (hit_chunks = host + disk + valkey), the bytes are
    the stored ones, and once retrieved they are host hits."""
    disk = tmp_path / "disk"
    disk.mkdir()
    d = daemon_factory(f"local_disk: file://{disk}/\nmax_local_disk_size: 0.1\n")
    tokens = list(range(5000, 5000 + 3 * 256))
    chunks = [os.urandom(64 * 1024 + 7) for _ in range(3)]
    with client(d) as c:
        c.store_inline(tokens, chunks).wait(5.0)
        deadline = time.monotonic() + 20
        while c.stats()["disk"]["entries"] < 3:
            assert time.monotonic() < deadline, c.stats()["disk"]
            time.sleep(0.05)
        first = c.lookup(tokens=tokens, no_lease=True)
        assert (first.hit_chunks, first.host_chunks, first.disk_chunks, first.valkey_chunks) == (3, 3, 0, 0)
    d.kill()
    d.start()
    with client(d) as c:
        ok = c.lookup(tokens=tokens, lease_ttl_ms=10000)
        assert (ok.hit_chunks, ok.host_chunks, ok.disk_chunks, ok.valkey_chunks) == (3, 0, 3, 0)
        assert list(c.retrieve_inline(ok.lease_id, 0, 3).chunks) == chunks
        c.release_lease(ok.lease_id, wait=True)
        again = c.lookup(tokens=tokens, no_lease=True)
        assert (again.hit_chunks, again.host_chunks, again.disk_chunks) == (3, 3, 0)
