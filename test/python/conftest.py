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
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

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
        log_from = log.tell()
        cmd = os.environ.get("KVTIER_PY_DAEMON", f"node {DAEMON_MAIN}").split()
        self.proc = subprocess.Popen(
            cmd + ["start", "--socket", self.socket, "--config", self.config],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + timeout
        # The daemon serves at once and warms its pool in the background;
        # tests store right away, so wait for the warm line as well.
        while time.monotonic() < deadline:
            if os.path.exists(self.socket) and self._logged_since(log_from, '"host pool warm'):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"kvtierd did not create {self.socket}; log:\n{self.log()}")

    def _logged_since(self, offset: int, text: str) -> bool:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return text.encode() in f.read()

    def pause(self) -> None:
        """SIGSTOP: a hung daemon (socket open, nothing answered)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGCONT)
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
    """chunk_size 256 and max_local_cpu_size 1 unless `extra` sets them (later YAML keys would be duplicates)."""
    base = "" if "chunk_size" in extra else "chunk_size: 256\n"
    base += "" if "max_local_cpu_size" in extra else "max_local_cpu_size: 1\n"
    with open(path, "w") as f:
        f.write(base + extra)


@pytest.fixture
def daemon_factory() -> Iterator[Callable[..., Daemon]]:
    """Starts kvtierd processes with extra YAML lines; kills them all at the end."""
    if "KVTIER_PY_DAEMON" not in os.environ and not os.path.exists(DAEMON_MAIN):
        pytest.skip(f"kvtierd is not built ({os.path.relpath(DAEMON_MAIN, REPO)} missing: run npm run build)")
    started: list[Daemon] = []
    with tempfile.TemporaryDirectory(prefix="kvtier-py-") as tmp:
        def make(extra_yaml: str = "") -> Daemon:
            n = len(started)
            cfg = os.path.join(tmp, f"kvtier-{n}.yaml")
            _write_config(cfg, extra_yaml)
            d = Daemon(os.path.join(tmp, f"kvtier-{n}.sock"), cfg, os.path.join(tmp, f"kvtierd-{n}.log"))
            started.append(d)
            d.start()
            return d
        try:
            yield make
        finally:
            for d in started:
                d.kill()


@pytest.fixture
def daemon(daemon_factory: Callable[..., Daemon]) -> Daemon:
    return daemon_factory()


@pytest.fixture
def valkey() -> Iterator[int]:
    """A real valkey-server on a free loopback port for one test; its port."""
    exe = shutil.which("valkey-server")
    if exe is None:
        pytest.skip("valkey-server is not installed (scripts/ensure-valkey.sh)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tempfile.mkdtemp(prefix="kvtier-test-valkey-")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if subprocess.run(["valkey-cli", "-p", str(port), "ping"], capture_output=True,
                              text=True).stdout.strip() == "PONG":
                break
            time.sleep(0.05)
        yield port
    finally:
        proc.kill()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
