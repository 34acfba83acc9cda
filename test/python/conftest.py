"""Shared fixtures: import path for the kvtier package and a real kvtierd.

`daemon` starts `node dist/src/cli/main.js start --socket <tmp> --config <tmp>`
(KVTIER_PY_DAEMON replaces `node dist/src/cli/main.js`, to debug against another build)
as a subprocess, waits for the socket file, and kills it at the end. When the
daemon has not been built (dist/src/cli/main.js missing) the tests that need
it skip with that reason instead of failing, so the pure-Python suite still
runs on a fresh checkout.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Iterator, Optional

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "integrations", "python"))
DAEMON_MAIN = os.path.join(REPO, "dist", "src", "cli", "main.js")
VECTORS = os.path.join(REPO, "test", "vectors", "prefix-hash.json")


@dataclass
class Daemon:
    socket: str
    config: str
    log_path: str
    proc: Optional[subprocess.Popen] = None
    extra_yaml: str = ""
    starts: int = field(default=0)

    def start(self, timeout: float = 40.0) -> None:
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        log = open(self.log_path, "ab")
        cmd = os.environ.get("KVTIER_PY_DAEMON", f"node {DAEMON_MAIN}").split()
        self.proc = subprocess.Popen(
            cmd + ["start", "--socket", self.socket, "--config", self.config],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.socket):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"kvtierd did not create {self.socket}; log:\n{self.log()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""


def _write_config(path: str, extra: str = "") -> None:
    with open(path, "w") as f:
        f.write("chunk_size: 256\nmax_local_cpu_size: 1\n" + extra)


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    if "KVTIER_PY_DAEMON" not in os.environ and not os.path.exists(DAEMON_MAIN):
        pytest.skip(f"kvtierd is not built ({os.path.relpath(DAEMON_MAIN, REPO)} missing: run npm run build)")
    with tempfile.TemporaryDirectory(prefix="kvtier-py-") as tmp:
        cfg = os.path.join(tmp, "kvtier.yaml")
        _write_config(cfg)
        d = Daemon(os.path.join(tmp, "kvtier.sock"), cfg, os.path.join(tmp, "kvtierd.log"))
        d.start()
        try:
            yield d
        finally:
            d.kill()
