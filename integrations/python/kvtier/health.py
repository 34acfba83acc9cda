"""Daemon reachability as the engines see it: warn once, back off, recover.

An engine must never fail because kvtierd is away: every failure is a cache
miss. But retrying a dead socket on every request would spam logs and burn
time, so after a failure calls are skipped for `retry_interval` seconds, the
first failure of an outage logs one warning, and recovery logs one info line.
"""
from __future__ import annotations

import logging
import threading
import time


class Health:
    def __init__(self, what: str, log: logging.Logger, retry_interval: float = 1.0) -> None:
        self.what = what
        self.log = log
        self.retry_interval = retry_interval
        self.down = False
        self.failures = 0
        self._next_try = 0.0
        self._lock = threading.Lock()

    def ready(self) -> bool:
        """False while backing off after a failure."""
        return time.monotonic() >= self._next_try

    def ok(self) -> None:
        with self._lock:
            if self.down:
                self.log.info("kvtier: %s reachable again", self.what)
            self.down = False
            self._next_try = 0.0

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self.failures += 1
            self._next_try = time.monotonic() + self.retry_interval
            if not self.down:
                self.log.warning("kvtier: %s unavailable, treating as cache miss until it is back: %s",
                                 self.what, exc)
            self.down = True
