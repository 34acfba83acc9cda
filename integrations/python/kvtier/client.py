"""Synchronous kvtierd client: one Unix socket, pipelined requests, reconnect on demand.

    caller threads ──submit()──▶ [send lock] ──frames──▶ kvtierd
                    ◀─Pending── [pending by id] ◀─reader thread─┘

Every request gets a fresh id; a reader thread routes each response to the
Pending of its id (a Store gets two: StoreCopied, then StoreCommitted), so many
requests may be in flight and callers block only in Pending.wait(timeout).
A dead connection fails every Pending with DaemonUnavailable and the next
request dials again, re-sends Hello and, if this client registered KV memory,
RegisterKv (the daemon forgets both with the connection).
"""
from __future__ import annotations

import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any, Optional

from . import proto
from .constants import CLIENT_MAX_FRAME_BYTES
from .errors import (DaemonUnavailable, KvtierError, NamespaceMismatchError, ProtocolError, RequestTimeout,
                     error_from_daemon)
from .framing import FrameDecoder, frame_parts, lookup_frame_parts, pack_u32, u32_array
from .hashing import Fingerprint

log = logging.getLogger("kvtier.client")

# Socket send buffer asked for (the kernel caps it at net.core.wmem_max): a
# 128K-token Lookup frame (512 KiB) then goes to the kernel in one sendmsg
# instead of in steps the daemon's reads have to make room for (default
# about 208 KiB).
SEND_BUFFER_BYTES = 4 << 20


class Pending:
    """Responses to one request id; `wait` returns them or raises the failure."""

    def __init__(self, request_id: int, expect: int) -> None:
        self.id = request_id
        self.expect = expect
        self.responses: list[tuple[str, Any]] = []
        self.error: Optional[KvtierError] = None
        self._cond = threading.Condition()

    def _deliver(self, field: str, msg: Any) -> bool:
        with self._cond:
            self.responses.append((field, msg))
            self._cond.notify_all()
            return len(self.responses) >= self.expect

    def _fail(self, err: KvtierError) -> None:
        with self._cond:
            if self.error is None:
                self.error = err
            self._cond.notify_all()

    def done(self, count: Optional[int] = None) -> bool:
        """True once `count` (default: all expected) responses arrived or the request failed.
        Never blocks: the vLLM worker polls its loads and saves with it each step."""
        need = self.expect if count is None else count
        with self._cond:
            return self.error is not None or len(self.responses) >= need

    def wait(self, timeout: float, count: Optional[int] = None) -> list[tuple[str, Any]]:
        """Blocks until `count` (default: all expected) responses arrived."""
        need = self.expect if count is None else count
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.responses) < need and self.error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RequestTimeout(f"request {self.id}: no answer in {timeout:.3f}s")
                self._cond.wait(left)
            if len(self.responses) >= need:
                return list(self.responses[:need])
            assert self.error is not None
            raise self.error


class _Connection:
    """One connected socket and its reader thread."""

    def __init__(self, path: str, connect_timeout: float, max_frame: int) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(connect_timeout)
        try:
            self.sock.connect(path)
        except OSError as exc:
            self.sock.close()
            raise DaemonUnavailable(f"cannot connect to kvtierd at {path}: {exc}") from exc
        self.sock.settimeout(None)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        except OSError:  # pragma: no cover - the default buffer works, only slower
            pass
        self.alive = True
        self.pending: dict[int, Pending] = {}
        self.lock = threading.Lock()
        self.send_lock = threading.Lock()
        self.decoder = FrameDecoder(max_frame)
        self.reader = threading.Thread(target=self._read_loop, name="kvtier-reader", daemon=True)
        self.reader.start()

    def send(self, request_id: int, body: Any, expect: int) -> Pending:
        return self.send_parts(request_id, list(frame_parts(proto.envelope(request_id, body))), expect)

    def send_parts(self, request_id: int, parts: list[Any], expect: int) -> Pending:
        """Sends one frame given as buffers, in one sendmsg where the kernel takes it whole."""
        p = Pending(request_id, expect)
        with self.lock:
            if not self.alive:
                raise DaemonUnavailable("connection to kvtierd is closed")
            self.pending[request_id] = p
        try:
            with self.send_lock:
                total = sum(memoryview(b).nbytes for b in parts)
                sent = self.sock.sendmsg(parts)
                if sent < total:  # interrupted part way: the rest, in order
                    self.sock.sendall(b"".join(bytes(memoryview(b).cast("B")) for b in parts)[sent:])
        except OSError as exc:
            self.close(DaemonUnavailable(f"send failed: {exc}"))
            raise DaemonUnavailable(f"send failed: {exc}") from exc
        return p

    def forget(self, request_id: int) -> None:
        with self.lock:
            self.pending.pop(request_id, None)

    def _read_loop(self) -> None:
        reason: KvtierError = DaemonUnavailable("kvtierd closed the connection")
        try:
            while True:
                data = self.sock.recv(1 << 20)
                if not data:
                    break
                for env in self.decoder.feed(data):
                    self._dispatch(env)
        except KvtierError as exc:
            reason = exc
        except OSError as exc:
            reason = DaemonUnavailable(f"connection to kvtierd lost: {exc}")
        self.close(reason)

    def _dispatch(self, env: Any) -> None:
        field, msg = proto.body_of(env)
        with self.lock:
            p = self.pending.get(env.id)
        if p is None:
            if field == "error":
                log.warning("kvtierd error for request %d: %s: %s", env.id, msg.code, msg.message)
            return
        if field == "error":
            p._fail(error_from_daemon(msg.code, msg.message))
            self.forget(env.id)
        elif p._deliver(field, msg):
            self.forget(env.id)

    def close(self, reason: Optional[KvtierError] = None) -> None:
        with self.lock:
            was_alive, self.alive = self.alive, False
            pending, self.pending = list(self.pending.values()), {}
        if was_alive:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
        err = reason or DaemonUnavailable("connection closed by client")
        for p in pending:
            p._fail(err)


class KvtierClient:
    """Talks to one kvtierd for one namespace. Thread-safe; connects lazily.

    `timeout` is the default per-request timeout in seconds; every call takes
    its own `timeout=` as well. With `dial_on_request=False` a request over no
    live connection raises DaemonUnavailable instead of dialling: the engine
    hooks that run inside a step connect only through connect(), on a thread
    of their own (session.Dial), so a hung daemon's Hello never holds a step.
    """

    def __init__(self, socket_path: str, fingerprint: Fingerprint, client_kind: str = "python",
                 timeout: float = 5.0, connect_timeout: float = 1.0,
                 max_frame: int = CLIENT_MAX_FRAME_BYTES,
                 lookup_ranks: Sequence[tuple[int, int]] = (), dial_on_request: bool = True) -> None:
        self.socket_path = socket_path
        self.dial_on_request = dial_on_request
        self.fingerprint = fingerprint
        # Hello.lookup_ranks: (tp_rank, pp_rank) per worker this client's Lookups answer for
        # (a scheduler); LookupOk.lease_ids then holds one lease per entry, in this order.
        self.lookup_ranks = tuple(lookup_ranks)
        self.client_kind = client_kind
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_frame = max_frame
        self.hello_ok: Any = None
        self.register_ok: Any = None
        self._register: Any = None
        self._conn: Optional[_Connection] = None
        self._ids = itertools.count(1)
        self._connect_lock = threading.Lock()
        self.reconnects = 0

    # -- connection ---------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.alive

    def connect(self) -> Any:
        """Dials (if not connected), sends Hello and re-registers KV memory; returns HelloOk."""
        with self._connect_lock:
            if self.connected:
                return self.hello_ok
            conn = _Connection(self.socket_path, self.connect_timeout, self.max_frame)
            try:
                hello = proto.Hello(protocol_version=proto.PROTOCOL_VERSION,
                                    fingerprint=self.fingerprint.to_proto(),
                                    client_kind=self.client_kind,
                                    lookup_ranks=[proto.Rank(tp_rank=t, pp_rank=p) for t, p in self.lookup_ranks])
                field, ok = conn.send(next(self._ids), hello, 1).wait(self.timeout)[0]
                if field != "hello_ok":
                    raise ProtocolError(f"expected hello_ok for Hello, got {field!r}")
                if ok.chunk_size and ok.chunk_size != self.fingerprint.chunk_size:
                    raise NamespaceMismatchError(
                                      f"daemon chunk_size {ok.chunk_size} != client "
                                      f"{self.fingerprint.chunk_size}")
                if self._register is not None:
                    field, reg = conn.send(next(self._ids), self._register, 1).wait(self.timeout)[0]
                    self.register_ok = reg
            except BaseException:
                conn.close()
                raise
            self.hello_ok = ok
            if self._conn is not None:
                self.reconnects += 1
            self._conn = conn
            return ok

    def close(self) -> None:
        with self._connect_lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = None

    def __enter__(self) -> "KvtierClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- generic requests ---------------------------------------------------

    def submit(self, body: Any, expect: int = 1) -> Pending:
        """Sends one request (connecting on demand, unless dial_on_request is off) and returns
        its Pending."""
        return self._live().send(next(self._ids), body, expect)

    def _live(self) -> "_Connection":
        """The live connection: dialled now if there is none and dial_on_request is set."""
        if self.dial_on_request:
            self.connect()
        conn = self._conn
        if conn is None or not conn.alive:
            raise DaemonUnavailable("not connected")
        return conn

    def call(self, body: Any, expect_field: str, timeout: Optional[float] = None) -> Any:
        """Sends one request and waits for its single response of type `expect_field`."""
        return self._result(self.submit(body), expect_field, type(body).DESCRIPTOR.name, timeout)

    def _result(self, p: Pending, expect_field: str, what: str, timeout: Optional[float]) -> Any:
        try:
            field, msg = p.wait(self.timeout if timeout is None else timeout)[0]
        except RequestTimeout:
            if self._conn is not None:
                self._conn.forget(p.id)
            raise
        if field != expect_field:
            raise ProtocolError(f"expected {expect_field} for {what}, got {field!r}")
        return msg

    # -- API ----------------------------------------------------------------

    def ping(self, timeout: Optional[float] = None) -> None:
        self.call(proto.Ping(), "pong", timeout)

    def lookup(self, tokens: Optional[Sequence[int]] = None, keys: Optional[Sequence[bytes]] = None,
               lease_ttl_ms: int = 0, no_lease: bool = False, timeout: Optional[float] = None) -> Any:
        """Longest cached prefix; pins it under a lease unless no_lease. Returns LookupOk."""
        if tokens is not None and keys is None and len(tokens) > 0:
            p = self.submit_lookup(u32_array(tokens), lease_ttl_ms=lease_ttl_ms, no_lease=no_lease)
            return self._result(p, "lookup_ok", "Lookup", timeout)
        msg = proto.Lookup(address=address(tokens, keys), lease_ttl_ms=lease_ttl_ms, no_lease=no_lease)
        return self.call(msg, "lookup_ok", timeout)

    def submit_lookup(self, packed: Any, seed: bytes = b"", lease_ttl_ms: int = 0,
                      no_lease: bool = False) -> Pending:
        """The scheduler's hot call: a Lookup around `packed` (u32_array of the prompt's tokens,
        packed once by the caller and sent as it is, for any number of clients); its Pending."""
        conn = self._live()
        rid = next(self._ids)
        return conn.send_parts(rid, lookup_frame_parts(rid, packed, lease_ttl_ms, no_lease, seed), 1)

    def report_bypass(self, reason: str) -> None:
        """Tells the daemon a request was kept away from kvtier (counted by reason in `kvtier
        stats`); does not wait for the Ack. reason: [a-z0-9_], 1-48 characters."""
        self.submit(proto.Bypass(reason=reason))

    def release_lease(self, lease_id: int, wait: bool = False) -> None:
        """Unpins a lease; by default does not wait for the Ack."""
        if not lease_id:
            return
        p = self.submit(proto.ReleaseLease(lease_id=lease_id))
        if wait:
            p.wait(self.timeout)

    def put(self, key: bytes, value: bytes, timeout: Optional[float] = None) -> None:
        self.call(proto.Put(key=key, value=value), "ack", timeout)

    def get(self, key: bytes, timeout: Optional[float] = None) -> Optional[bytes]:
        ok = self.call(proto.Get(key=key), "get_ok", timeout)
        return ok.value if ok.found else None

    def exists(self, keys: Sequence[bytes], timeout: Optional[float] = None) -> Any:
        """ExistsOk{prefix_found, found[]}."""
        return self.call(proto.Exists(keys=list(keys)), "exists_ok", timeout)

    def store_inline(self, tokens: Optional[Sequence[int]], chunks: Sequence[bytes],
                     keys: Optional[Sequence[bytes]] = None, seed: bytes = b"") -> Pending:
        """Inline Store; Pending gets StoreCopied then StoreCommitted."""
        return self.submit(proto.Store(address=address(tokens, keys, seed), chunks=list(chunks)), expect=2)

    def store_blocks(self, tokens: Optional[Sequence[int]], block_ids: Sequence[int], skip_chunks: int = 0,
                     keys: Optional[Sequence[bytes]] = None, seed: bytes = b"") -> Pending:
        """Block-form Store from registered KV memory (chunks named by tokens, or by one key
        each); blocks are reusable after StoreCopied."""
        body = proto.Store(address=address(None if keys is not None else tokens, keys, seed),
                           block_ids=pack_u32(block_ids), skip_chunks=skip_chunks)
        return self.submit(body, expect=2)

    def retrieve_inline(self, lease_id: int, first_chunk: int = 0, num_chunks: int = 0,
                        timeout: Optional[float] = None) -> Any:
        body = proto.Retrieve(lease_id=lease_id, first_chunk=first_chunk, num_chunks=num_chunks)
        return self.call(body, "retrieve_done", timeout)

    def retrieve_blocks(self, lease_id: int, first_chunk: int, num_chunks: int,
                        block_ids: Sequence[int]) -> Pending:
        """Block-form Retrieve; the Pending's RetrieveDone lists failed blocks."""
        body = proto.Retrieve(lease_id=lease_id, first_chunk=first_chunk, num_chunks=num_chunks,
                              block_ids=pack_u32(block_ids))
        return self.submit(body)

    def register_kv(self, request: Any, timeout: Optional[float] = None) -> Any:
        """Registers KV memory (a proto.RegisterKv); remembered and re-sent after reconnects."""
        self.connect()
        ok = self.call(request, "register_kv_ok", timeout)
        self._register = request
        self.register_ok = ok
        return ok

    def invalidate(self, tokens: Optional[Sequence[int]] = None,
                   keys: Optional[Sequence[bytes]] = None) -> int:
        addr = address(tokens, keys) if tokens is not None or keys is not None else proto.ChunkAddress()
        return self.call(proto.Invalidate(address=addr), "invalidate_ok").removed_chunks

    def stats(self) -> dict[str, Any]:
        return json.loads(self.call(proto.Stats(), "stats_ok").json or "{}")


def address(tokens: Optional[Sequence[int]], keys: Optional[Sequence[bytes]], seed: bytes = b"") -> Any:
    """ChunkAddress from token ids or opaque keys (exactly one of them), with the request's
    chain seed if it has one (send a seed only where HelloOk.address_seed is set)."""
    if (tokens is None) == (keys is None):
        raise ValueError("expected exactly one of tokens or keys for a chunk address")
    if tokens is not None:
        return proto.ChunkAddress(tokens=pack_u32(tokens), seed=seed)
    return proto.ChunkAddress(keys=[bytes(k) for k in keys or []], seed=seed)
