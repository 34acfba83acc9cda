#!/usr/bin/python3
"""`kvtier bench stall`'s Python side: does a load from Valkey stall the engine's step loop?

    /usr/bin/python3 bench/stall_engine.py SOCKET_A SOCKET_B VALKEY_PID [--context 16384]
        [--shorts 4] [--short-tokens 100] [--baseline-s 3] [--pause-ms 800] [--pauses 3]
        [--gap-ms 100]

Run by bench/stall.ts, which starts one valkey-server and two kvtierd (A and B)
sharing it. The reference engine (kvtier.refengine, vLLM's WAITING_FOR_REMOTE_KVS
path) does, in this order:

  producer   an engine on A computes a --context-token prompt (a miss: its logits are
             the recompute reference) and saves it; A's write-behind drains to Valkey
  warm-up    the consumer engine, on B, runs a short prompt stored the same way: its
             first lookup and load through B's Valkey connections are paid here
  baseline   --shorts short requests decode for --baseline-s; every step timed
  load       the long prompt arrives. B's host tier never held it, so its chunks come
             from Valkey. Right after the worker sent the Retrieve, valkey-server is
             stopped (SIGSTOP) for --pause-ms, --pauses times, --gap-ms apart
             (SIGCONT in between): the load lasts seconds, the batch goes on decoding
  during_load  every step from the one that looked the long prompt up to the one that
             reported it in finished_recving

A pause stays below the Valkey tier's request ceiling (about 1.1 s at the defaults,
docs/valkey.md "a hung server"): a longer one fails the fetches, and the load ends
as failed blocks that are recomputed (logits still match, chunks_loaded drops).
logits_match: the long request's first-token logits after the load equal the
producer's recompute bit for bit (float32). Prints one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from typing import Any, Optional

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "integrations", "python"))

import torch  # noqa: E402

from kvtier.refengine import RefEngine  # noqa: E402
from kvtier.refengine.drain import wait_write_behind  # noqa: E402
from kvtier.refengine.model import ModelConfig  # noqa: E402

WARM_TOKENS = 300
# A load may last seconds here: far below kvtier_timeout_s. The long Lookup's wait is long so that
# its answer is used in the step that asks it and start_load_kv (where valkey-server is stopped)
# runs while the Lookup's prefetch is in flight. With the default 5 ms the answer is taken a step
# later, the whole prefetch has landed by then, and no stop falls under the load (the bench
# measured 1 stop and a 0.3 s load that way). The step that waits for the answer counts as one
# of the load's steps.
EXTRA = {"kvtier_timeout_s": 30.0, "kvtier_lookup_wait_ms": 2000}


def progress(msg: str) -> None:
    print(f"stall_engine: {msg}", file=sys.stderr, flush=True)


def prompt(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(ModelConfig().vocab) for _ in range(n)]


def produce(sock: str, tokens: list[int], num_blocks: int, model: ModelConfig) -> torch.Tensor:
    e = RefEngine(sock, num_blocks=num_blocks, extra=EXTRA, model=model)
    try:
        r = e.generate("producer", tokens)
        if r.external_tokens:
            raise SystemExit("stall_engine: daemon A was not empty")
        e.drain(timeout_s=120)
        return r.first_logits
    finally:
        e.close()


class ValkeyPauser:
    """Stops valkey-server `pauses` times for `pause_s`, `gap_s` apart, from the moment the
    worker has sent the long prompt's Retrieve (the engine's after_start_load hook), until
    the load has ended. Always leaves it running."""

    def __init__(self, pid: int, pause_s: float, pauses: int, gap_s: float) -> None:
        self.pid, self.pause_s, self.pauses, self.gap_s = pid, pause_s, pauses, gap_s
        self.enabled = False     # set for the long prompt: the warm-up's load is not paused
        self.armed = False
        self.started = False
        self.load_ended = threading.Event()
        self.paused_s = 0.0
        self.stops = 0
        self.thread: Optional[threading.Thread] = None

    def after_build_meta(self, meta: Any) -> None:
        if self.enabled and meta.loads and not self.started:
            self.armed = True

    def after_start_load(self) -> None:
        if self.armed:
            self.armed, self.started = False, True
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()

    def _run(self) -> None:
        try:
            for i in range(self.pauses):
                if self.load_ended.is_set():
                    return
                t0 = time.perf_counter()
                os.kill(self.pid, signal.SIGSTOP)
                self.stops += 1
                self.load_ended.wait(self.pause_s)
                os.kill(self.pid, signal.SIGCONT)
                self.paused_s += time.perf_counter() - t0
                if i + 1 < self.pauses:
                    self.load_ended.wait(self.gap_s)
        finally:
            os.kill(self.pid, signal.SIGCONT)

    def finish(self) -> None:
        self.load_ended.set()
        if self.thread is not None:
            self.thread.join(10)
        os.kill(self.pid, signal.SIGCONT)


def step_stats(times_s: list[float]) -> dict[str, float]:
    xs = sorted(times_s)
    at = lambda q: round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1e3, 3)  # noqa: E731
    return {"p50": at(0.5), "p99": at(0.99), "max": round(xs[-1] * 1e3, 3), "steps": len(xs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("socket_a")
    ap.add_argument("socket_b")
    ap.add_argument("valkey_pid", type=int)
    ap.add_argument("--context", type=int, default=8192, help="the long prompt's tokens")
    ap.add_argument("--kv-heads", type=int, default=8, help="KV heads of the reference model (8: 4 MiB chunks, "
                    "so the transfer itself takes a while beside the stops)")
    ap.add_argument("--shorts", type=int, default=4, help="short requests decoding all along")
    ap.add_argument("--short-tokens", type=int, default=100, help="prompt tokens of each short request")
    ap.add_argument("--baseline-s", type=float, default=3.0, help="seconds of decode steps before the load")
    ap.add_argument("--pause-ms", type=float, default=800.0, help="each SIGSTOP of valkey-server")
    ap.add_argument("--pauses", type=int, default=3, help="SIGSTOPs during the load")
    ap.add_argument("--gap-ms", type=float, default=200.0, help="valkey-server running between two SIGSTOPs")
    args = ap.parse_args()
    if args.context <= 256 or args.short_tokens >= 256:
        raise SystemExit("stall_engine: --context must exceed one chunk (256) and --short-tokens stay below it")
    torch.manual_seed(0)
    t_start = time.monotonic()
    num_blocks = args.context // 16 + 32 + args.shorts * (args.short_tokens // 16 + 64)
    long_prompt = prompt(args.context, 1)
    model = ModelConfig(kv_heads=args.kv_heads)

    progress(f"producer: {args.context} tokens computed on daemon A and saved")
    want = produce(args.socket_a, long_prompt, num_blocks, model)
    warm_prompt = prompt(WARM_TOKENS, 2)
    produce(args.socket_a, warm_prompt, 64, model)
    wait_write_behind(args.socket_a, 'stall_engine')

    pauser = ValkeyPauser(args.valkey_pid, args.pause_ms / 1e3, args.pauses, args.gap_ms / 1e3)
    e = RefEngine(args.socket_b, num_blocks=num_blocks, extra=EXTRA, model=model,
                  hooks={"after_build_meta": pauser.after_build_meta, "after_start_load": pauser.after_start_load})
    try:
        stats = e.worker._worker.stats
        warm = e.generate("warm", warm_prompt)
        if warm.external_tokens == 0:
            raise SystemExit("stall_engine: daemon B found nothing in Valkey for the warm-up prompt")
        shorts = [e.add_request(f"short-{i}", prompt(args.short_tokens, 100 + i), max_new_tokens=1 << 30)
                  for i in range(args.shorts)]
        while any(not s.output_token_ids for s in shorts):
            e.step()
        for _ in range(5):                       # past the prefill steps
            e.step()
        progress(f"baseline: {args.shorts} short requests decoding for {args.baseline_s} s")
        n0 = len(e.step_times)
        t_end = time.perf_counter() + args.baseline_s
        while time.perf_counter() < t_end:
            e.step()
        baseline = [dt for _, dt, _ in e.step_times[n0:]]

        progress(f"load: {args.context} tokens from Valkey through daemon B, valkey-server stopped "
                 f"{args.pauses} x {args.pause_ms:.0f} ms")
        loaded_before = stats["loaded_chunks"]
        n1 = len(e.step_times)
        pauser.enabled = True
        long = e.add_request("long", long_prompt)
        deadline = time.monotonic() + 120
        while long.t_load_done is None and long.status != "FINISHED":
            e.step()
            if time.monotonic() > deadline:
                raise SystemExit("stall_engine: the long prompt's load did not end in 120 s")
        pauser.finish()
        while long.status != "FINISHED":
            e.step()
        end = long.t_load_done if long.t_load_done is not None else float("inf")
        during_steps = [(t, dt) for t, dt, _ in e.step_times[n1:] if t < end]
        during = [dt for _, dt in during_steps]
        chunks_loaded = stats["loaded_chunks"] - loaded_before
        for s in shorts:
            e.abort(s.request_id)
    finally:
        pauser.finish()
        e.close()

    got = long.first_logits
    base = step_stats(baseline)
    dur = step_stats(during)
    bound = base["max"] * 1.25 + 5.0
    load_ms = None if long.t_load_done is None else round((long.t_load_done - long.t_load_start) * 1e3, 1)
    cfg = model
    chunk_bytes = 256 * cfg.layers * 2 * cfg.kv_heads * cfg.head_dim * 4
    result = {
        "bench": "stall",
        "baseline": {"step_ms": base},
        "during_load": {"step_ms": dur, "chunks_loaded": chunks_loaded, "load_ms": load_ms,
                        "loaded_tokens": long.external_tokens, "failed_blocks": len(long.load_error_blocks),
                        "valkey_stopped_ms": round(pauser.paused_s * 1e3, 1), "valkey_stops": pauser.stops,
                        # each step: (start, ms) with start in ms after the long prompt arrived; the
                        # first is the step that looked it up, the last the one that saw it loaded
                        "steps": [[round((t - long.t_arrival) * 1e3, 1), round(dt * 1e3, 1)]
                                  for t, dt in during_steps[:200]]},
        "logits_match": bool(got is not None and torch.equal(got, want)),
        "target": {"bound_ms": round(bound, 3), "ratio": round(dur["max"] / bound, 3),
                   "what": "max step during the load / (1.25 x max step of the baseline + 5 ms); met at <= 1"},
        "engine": {"model": f"refengine-{cfg.layers}L-{cfg.q_heads}q{cfg.kv_heads}kv-d{cfg.head_dim}", "dtype": "float32", "layout": "flash",
                   "device": str(e.device), "context_tokens": args.context, "shorts": args.shorts,
                   "short_tokens": args.short_tokens, "layers": cfg.layers, "kv_heads": cfg.kv_heads,
                   "head_dim": cfg.head_dim, "chunk_bytes": chunk_bytes, "torch_threads": torch.get_num_threads()},
        "wall_s": round(time.monotonic() - t_start, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
