"""What every engine integration sets up beside the daemon: clients, health, lease release.

The vLLM scheduler and worker and the SGLang backend all talk to one kvtierd
the same way: clients with the integration's request timeout and a connect
timeout of at most a second (an absent daemon must cost a step little),
one `Health` per integration that turns an unreachable daemon into cache
misses with one warning, and leases released best-effort (never over a dead
connection: the daemon drops a connection's leases with it).

    session = Session("/tmp/kvtier.sock", timeout=5.0, retry_interval=1.0, log=log)
    client = session.client(fingerprint, "vllm-worker")
    if session.health.ready(): ...
    release_lease(client, lease_id)
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Optional

from .client import KvtierClient
from .errors import DaemonUnavailable, KvtierError
from .hashing import Fingerprint
from .health import Health

# The most a dial may take, whatever the request timeout: a daemon that is away
# answers at once with ECONNREFUSED/ENOENT; one that does not accept within a
# second is treated as away.
MAX_CONNECT_TIMEOUT_S = 1.0


class Session:
    """One daemon socket as an integration uses it: the clients it makes and their health."""

    def __init__(self, socket: str, timeout: float, retry_interval: float, log: logging.Logger) -> None:
        self.socket = socket
        self.timeout = timeout
        self.health = Health(f"kvtierd at {socket}", log, retry_interval)

    def client(self, fingerprint: Fingerprint, kind: str,
               lookup_ranks: Sequence[tuple[int, int]] = (), dial_on_request: bool = True) -> KvtierClient:
        """A client for one namespace (connects lazily, on its first request, unless
        dial_on_request is off: then only connect() dials); `lookup_ranks`: the (tp, pp) ranks
        its Lookups answer for (Hello.lookup_ranks, a scheduler's)."""
        return KvtierClient(self.socket, fingerprint, kind, timeout=self.timeout,
                            connect_timeout=min(self.timeout, MAX_CONNECT_TIMEOUT_S), lookup_ranks=lookup_ranks,
                            dial_on_request=dial_on_request)


class Dial:
    """A connect (dial, Hello, RegisterKv) on a thread of its own, for the engine hooks that
    run inside a step: after a daemon restart the first request has to say Hello again, and
    a daemon that accepts but does not answer yet (hung, busy starting) holds that Hello for
    the client timeout, which no step may wait. `connect` raises a KvtierError or returns."""

    def __init__(self, connect: Callable[[], object]) -> None:
        self.error: Optional[KvtierError] = None
        self._thread = threading.Thread(target=self._run, args=(connect,), name="kvtier-dial", daemon=True)
        self._thread.start()

    def _run(self, connect: Callable[[], object]) -> None:
        try:
            connect()
        except KvtierError as exc:
            self.error = exc
        except Exception as exc:  # an OSError the client did not wrap is a daemon away too
            self.error = DaemonUnavailable(f"connect failed: {exc}")

    def done(self) -> bool:
        return not self._thread.is_alive()


class Reconnect:
    """One client's reconnects, for the engine hooks that run inside a step (the vLLM
    scheduler's and workers'): poll() never waits. `connected` says whether the client is
    usable; `connect` makes it so (a Dial runs it)."""

    def __init__(self, connected: Callable[[], bool], connect: Callable[[], object]) -> None:
        self._connected, self._connect = connected, connect
        self._dial: Optional[Dial] = None

    @property
    def dialling(self) -> bool:
        return self._dial is not None

    def poll(self, health: Health) -> bool:
        """Whether the client is connected. If it is not, starts a Dial (when health allows a
        try) and answers False until the Dial has ended; its outcome goes to health (a failed
        one starts the back-off and is warned once)."""
        if self._dial is None:
            if self._connected():
                return True
            if health.ready():
                self._dial = Dial(self._connect)
            return False
        if not self._dial.done():
            return False
        dial, self._dial = self._dial, None
        if dial.error is not None:
            health.failed(dial.error)
            return False
        health.ok()
        return self._connected()


def release_lease(client: Optional[KvtierClient], lease_id: int) -> None:
    """Unpins a lease without waiting; nothing when there is no live connection (the daemon
    released the connection's leases when it closed) and never raises."""
    if client is None or not client.connected:
        return
    try:
        client.release_lease(lease_id)
    except KvtierError:
        pass
