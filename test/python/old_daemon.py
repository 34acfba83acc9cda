"""A kvtierd from before ChunkAddress.seed, made from the real one: a Unix-socket relay in
front of a running daemon that forwards every frame both ways and behaves as such a daemon
would on the wire. Its HelloOk never says address_seed, and a request's ChunkAddress.seed
is dropped on the way in (the old daemon did not know the field), so a seeded Store really
lands under the unseeded prompt's chunks and a seeded Lookup really hits them. Each seed it
dropped is recorded in `seeded`.

    client ──frames──▶ OldDaemon (strips ChunkAddress.seed) ──frames──▶ kvtierd
           ◀──frames── (HelloOk.address_seed cleared; held while hold_hello) ◀──

`drop(kind)` closes the connections of one client kind ("vllm-scheduler"), as a daemon
that dropped them would; `hold_hello(kind)` keeps that kind's next HelloOk until
`release_hello()`, so that a test decides when such a client's reconnect completes.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable, Optional

from kvtier import proto
from kvtier.framing import FrameDecoder, encode_frame

HOLD_MAX_S = 5.0


class _Pair:
    def __init__(self, client: socket.socket, daemon: socket.socket) -> None:
        self.client, self.daemon = client, daemon
        self.kind = ""

    def close(self) -> None:
        for s in (self.client, self.daemon):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class OldDaemon:
    def __init__(self, daemon_socket: str, path: str) -> None:
        self.daemon_socket = daemon_socket
        self.socket = path
        self.seeded: list[str] = []              # request kinds that came with a seed (dropped)
        self._pairs: list[_Pair] = []
        self._held: Optional[str] = None
        self._gate = threading.Event()
        self._gate.set()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(16)
        threading.Thread(target=self._accept, name="old-daemon", daemon=True).start()

    def hold_hello(self, kind: str) -> None:
        self._held = kind
        self._gate.clear()

    def release_hello(self) -> None:
        self._held = None
        self._gate.set()

    def drop(self, kind: str) -> None:
        for pair in list(self._pairs):
            if pair.kind == kind:
                pair.close()

    def close(self) -> None:
        self.release_hello()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        for pair in list(self._pairs):
            pair.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.daemon_socket)
            except OSError:
                client.close()
                upstream.close()
                continue
            pair = _Pair(client, upstream)
            self._pairs.append(pair)
            threading.Thread(target=self._pump, args=(pair, client, upstream, self._inbound),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(pair, upstream, client, self._outbound),
                             daemon=True).start()

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket,
              rewrite: Callable[[_Pair, Any], None]) -> None:
        decoder = FrameDecoder(1 << 30)
        try:
            while True:
                data = src.recv(1 << 20)
                if not data:
                    break
                for env in decoder.feed(data):
                    rewrite(pair, env)
                    dst.sendall(encode_frame(env))
        except OSError:
            pass
        pair.close()

    def _inbound(self, pair: _Pair, env: Any) -> None:
        field, msg = proto.body_of(env)
        if msg is None:
            return
        if field == "hello":
            pair.kind = msg.client_kind
        elif "address" in msg.DESCRIPTOR.fields_by_name and msg.HasField("address") and msg.address.seed:
            self.seeded.append(field)
            msg.address.ClearField("seed")

    def _outbound(self, pair: _Pair, env: Any) -> None:
        field, msg = proto.body_of(env)
        if field != "hello_ok":
            return
        msg.ClearField("address_seed")
        if pair.kind == self._held:
            self._gate.wait(HOLD_MAX_S)


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.005)
