#!/usr/bin/python3
"""TTFT of the reference engine (kvtier.refengine), measured on this machine.

    /usr/bin/python3 bench/ttft_engine.py [--json] [--contexts 2048,4096,8192]
        [--dtype float32|bfloat16] [--layout flash|flashinfer|mla|layer_major|cross_layer] [--check]

For each context length (a fresh random prompt per length, so lengths never share):
  recompute   an engine with KVTierConnector on an empty kvtierd (A) computes the
              whole prompt (the lookup misses) and saves it. Its logits are the reference.
  host_hit    the engine is closed and a new instance (a restart) runs the same prompt
              against the same daemon A: every full chunk but the last token comes
              from A's host tier. Median of --host-repeats fresh instances.
  valkey_hit  a second Python process with its own kvtierd (B) runs the prompt. A and
              B share one valkey-server this script starts on a free loopback port;
              B's host tier is empty, so the chunks come from Valkey (first access only).

TTFT is from add_request to the first token's logits: Lookup, block allocation,
the load, the forward pass of the tokens not loaded, the LM head. Engine start-up
(weights, KV allocation, RegisterKv) is not in it. logits_match: the first-token
logits equal the recompute's bit for bit (float32), or within --bf16-atol (bf16).
stdout: one JSON object with --json, else a table; progress goes to stderr.
--check exits 1 when a row does not match.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "integrations", "python"))
DAEMON_MAIN = os.path.join(REPO, "dist", "src", "cli", "main.js")

import torch  # noqa: E402

from kvtier.refengine import RefEngine  # noqa: E402
from kvtier.refengine.drain import wait_write_behind  # noqa: E402
from kvtier.refengine.model import ModelConfig  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def progress(msg: str) -> None:
    print(f"ttft_engine: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prompt_for(n: int) -> list[int]:
    rng = random.Random(1000 + n)
    return [rng.randrange(ModelConfig().vocab) for _ in range(n)]


def blocks_for(contexts: list[int]) -> int:
    return max(contexts) // 16 + 32


class Procs:
    """valkey-server and kvtierd children, killed (process groups) on exit."""

    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []

    def valkey(self) -> int:
        exe = shutil.which("valkey-server")
        if exe is None:
            raise SystemExit("ttft_engine: valkey-server is not installed (sudo bash scripts/ensure-valkey.sh)")
        port = free_port()
        p = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                              "--dir", self.tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        self.procs.append(p)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return port
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"ttft_engine: valkey-server did not answer on port {port}")

    def daemon(self, name: str, valkey_port: int, cpu_gb: float) -> str:
        if not os.path.exists(DAEMON_MAIN):
            raise SystemExit(f"ttft_engine: {os.path.relpath(DAEMON_MAIN, REPO)} is missing: run npm run build")
        sock = os.path.join(self.tmp, f"{name}.sock")
        cfg = os.path.join(self.tmp, f"{name}.yaml")
        with open(cfg, "w") as f:
            f.write(f"chunk_size: 256\nmax_local_cpu_size: {cpu_gb}\n")
        env = {**os.environ, "KVTIER_REMOTE_URL": f"valkey://127.0.0.1:{valkey_port}"}
        log = open(os.path.join(self.tmp, f"{name}.log"), "ab")
        p = subprocess.Popen(["node", DAEMON_MAIN, "start", "--socket", sock, "--config", cfg], cwd=REPO, env=env,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if os.path.exists(sock):
                return sock
            if p.poll() is not None:
                break
            time.sleep(0.05)
        with open(os.path.join(self.tmp, f"{name}.log"), errors="replace") as f:
            raise SystemExit(f"ttft_engine: kvtierd {name} did not start:\n{f.read()[-2000:]}")

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(10)


def make_engine(sock: Optional[str], args: Any, contexts: list[int]) -> RefEngine:
    extra = {"kvtier_timeout_s": 30.0}
    return RefEngine(sock, dtype=DTYPES[args.dtype], layout=args.layout, num_blocks=blocks_for(contexts),
                     extra=extra)


WARM_TOKENS = 300


def warm_up(args: Any, sock: Optional[str] = None) -> None:
    """oneDNN's first calls, and the first lookup/load through a daemon (its Valkey connections),
    are slow; pay for them outside the measurements. With `sock`, the warm prompt goes through
    that daemon: stored on A by the parent, loaded from Valkey through B by the child."""
    e = RefEngine(sock, dtype=DTYPES[args.dtype], layout=args.layout, num_blocks=40,
                  extra={"kvtier_timeout_s": 30.0})
    try:
        e.generate("warm", prompt_for(WARM_TOKENS))
        e.drain(timeout_s=60) if sock else None
    finally:
        e.close()


def timed(sock: str, args: Any, contexts: list[int], n: int, rid: str) -> tuple[Any, RefEngine]:
    e = make_engine(sock, args, contexts)
    r = e.generate(rid, prompt_for(n))
    return r, e


def child_main(args: Any) -> None:
    """The second engine process: its own daemon B (given by --socket), Valkey hits."""
    contexts = [int(c) for c in args.contexts.split(",")]
    warm_up(args, args.child_socket)
    out: dict[str, Any] = {}
    for n in contexts:
        r, e = timed(args.child_socket, args, contexts, n, f"valkey-{n}")
        e.close()
        out[str(n)] = {"ttft_ms": r.ttft_s * 1e3, "external_tokens": r.external_tokens,
                       "computed_tokens": r.computed_tokens_total, "load_error_blocks": len(r.load_error_blocks),
                       "logits": r.first_logits}
        progress(f"[valkey_hit process] {n} tokens: {r.ttft_s * 1e3:.1f} ms, {r.external_tokens} loaded")
    torch.save(out, args.child_out)


def compare(got: torch.Tensor, want: torch.Tensor, args: Any) -> tuple[bool, float]:
    diff = float((got - want).abs().max())
    if args.dtype == "float32":
        return bool(torch.equal(got, want)), diff
    return diff <= args.bf16_atol, diff


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("--contexts", default="2048,4096,8192", help="comma-separated prompt lengths in tokens")
    ap.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    ap.add_argument("--layout", default="flash", choices=["flash", "flashinfer", "mla", "layer_major", "cross_layer"])
    ap.add_argument("--host-repeats", type=int, default=3, help="host_hit samples (fresh instances), median")
    ap.add_argument("--bf16-atol", type=float, default=2e-2, help="logits tolerance for bfloat16")
    ap.add_argument("--check", action="store_true", help="exit 1 when any row's logits do not match")
    ap.add_argument("--child-socket", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_socket:
        child_main(args)
        return 0

    contexts = [int(c) for c in args.contexts.split(",")]
    if any(c <= 256 for c in contexts):
        raise SystemExit("ttft_engine: contexts must be longer than one 256-token chunk")
    torch.manual_seed(0)
    t_start = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="kvtier-ttft-engine-")
    procs = Procs(tmp)
    chunk_mb = 256 * 4 * 2 * 2 * 64 * torch.empty((), dtype=DTYPES[args.dtype]).element_size() / 2**20
    cpu_gb = max(1.0, round(sum(contexts) / 256 * chunk_mb * 2 / 1024 + 0.5, 1))
    rows: list[dict[str, Any]] = []
    model_name = "refengine-4L-8q2kv-d64"
    try:
        port = procs.valkey()
        sock_a = procs.daemon("kvtierd-a", port, cpu_gb)
        sock_b = procs.daemon("kvtierd-b", port, cpu_gb)
        progress(f"valkey-server on 127.0.0.1:{port}, kvtierd A and B started; warming up")
        warm_up(args, sock_a)
        refs: dict[int, torch.Tensor] = {}
        for n in contexts:
            r, e = timed(sock_a, args, contexts, n, f"recompute-{n}")
            e.drain(timeout_s=120)
            e.close()
            assert r.external_tokens == 0, "the daemon was not empty"
            refs[n] = r.first_logits
            rows.append({"model": model_name, "context_tokens": n, "case": "recompute", "ttft_ms": r.ttft_s * 1e3,
                         "logits_match": True, "max_abs_diff": 0.0, "loaded_tokens": 0,
                         "computed_tokens": r.computed_tokens_total, "samples": 1})
            progress(f"{n} tokens: recompute {r.ttft_s * 1e3:.1f} ms")
            samples, match, diff, last = [], True, 0.0, None
            for i in range(args.host_repeats):
                r, e = timed(sock_a, args, contexts, n, f"host-{n}-{i}")
                e.drain(timeout_s=60)
                e.close()
                samples.append(r.ttft_s * 1e3)
                m, d = compare(r.first_logits, refs[n], args)
                match, diff, last = match and m and not r.load_error_blocks, max(diff, d), r
            assert last is not None
            rows.append({"model": model_name, "context_tokens": n, "case": "host_hit",
                         "ttft_ms": statistics.median(samples), "logits_match": match, "max_abs_diff": diff,
                         "loaded_tokens": last.external_tokens, "computed_tokens": last.computed_tokens_total,
                         "samples": len(samples), "ttft_ms_samples": samples})
            progress(f"{n} tokens: host_hit {statistics.median(samples):.1f} ms ({last.external_tokens} loaded)")
        wait_write_behind(sock_a, 'ttft_engine')
        child_out = os.path.join(tmp, "valkey.pt")
        progress("second engine process (own kvtierd B, shared Valkey)")
        cmd = [sys.executable, os.path.abspath(__file__), "--contexts", args.contexts, "--dtype", args.dtype,
               "--layout", args.layout, "--child-socket", sock_b, "--child-out", child_out]
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        got = torch.load(child_out)
        for n in contexts:
            g = got[str(n)]
            m, d = compare(g["logits"], refs[n], args)
            rows.append({"model": model_name, "context_tokens": n, "case": "valkey_hit", "ttft_ms": g["ttft_ms"],
                         "logits_match": m and not g["load_error_blocks"], "max_abs_diff": d,
                         "loaded_tokens": g["external_tokens"], "computed_tokens": g["computed_tokens"],
                         "samples": 1})
    finally:
        procs.close()
        shutil.rmtree(tmp, ignore_errors=True)

    order = {"recompute": 0, "host_hit": 1, "valkey_hit": 2}
    rows.sort(key=lambda r: (r["context_tokens"], order[r["case"]]))
    cfg = ModelConfig()
    result = {
        "bench": "ttft", "mode": "engine", "rows": rows,
        "engine": {"model": model_name, "layers": cfg.layers, "q_heads": cfg.q_heads, "kv_heads": cfg.kv_heads,
                   "head_dim": cfg.head_dim, "mlp": cfg.mlp, "vocab": cfg.vocab, "dtype": args.dtype,
                   "layout": args.layout, "device": "cuda" if torch.cuda.is_available() else "cpu",
                   "block_size": 16, "chunk_size": 256},
        "logits_criterion": "bitwise" if args.dtype == "float32" else f"max_abs_diff <= {args.bf16_atol}",
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
                    "torch_threads": torch.get_num_threads()},
        "wall_s": round(time.monotonic() - t_start, 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'context':>8} {'case':<11} {'ttft_ms':>10} {'loaded':>7} {'computed':>8} {'logits':>8} max|diff|")
        for r in rows:
            print(f"{r['context_tokens']:>8} {r['case']:<11} {r['ttft_ms']:>10.1f} {r['loaded_tokens']:>7} "
                  f"{r['computed_tokens']:>8} {'equal' if r['logits_match'] else 'DIFFER':>8} {r['max_abs_diff']:.3g}")
    if args.check and not all(r["logits_match"] for r in rows):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
