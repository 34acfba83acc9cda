"""Waiting for a daemon's write-behind to Valkey to drain: the benches that
store on one daemon and load through another that shares only Valkey."""
from __future__ import annotations

import time

from ..client import KvtierClient
from ..hashing import Fingerprint


def wait_write_behind(sock: str, who: str, timeout: float = 120.0) -> None:
    """Until the daemon on `sock` has no queued or in-flight write-behind job."""
    c = KvtierClient(sock, Fingerprint("x", "x", "x"), "tool", timeout=5.0)
    try:
        deadline = time.monotonic() + timeout
        wb: dict = {}
        while time.monotonic() < deadline:
            wb = c.stats()["writeBehind"]
            if wb["queuedJobs"] == 0 and wb["inFlight"] == 0:
                return
            time.sleep(0.05)
        raise SystemExit(f"{who}: write-behind not drained after {timeout} s: {wb}")
    finally:
        c.close()
