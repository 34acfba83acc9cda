"""TP=2 for the reference engine: one worker process per tensor-parallel rank.

vLLM runs a worker process per TP rank, each holding the KV of its own heads and
its own worker-side connector; the scheduler-side connector is in the engine
core. Here the model's KV heads are sharded over the ranks (rank r holds KV
head r: its per-layer tensors are (2, num_blocks, block, kv_heads / tp, head_dim),
in /dev/shm), and each rank's KVTierConnector(WORKER) runs in its own process
(multiprocessing, spawn), told its rank by kvtier_tp_rank. The model itself is
computed in the engine process through the same shared memory (write K/V of
rank r's heads into rank r's tensors, read both when attending); what differs
between ranks, and must not be mixed up, is the KV each process registers,
stores and loads. Connector calls are forwarded to every rank in vLLM's order;
get_finished is aggregated like vLLM's KVOutputAggregator (a request is done
once every rank reported it), load errors are the union.
"""
from __future__ import annotations

import multiprocessing as mp
from typing import Any, Optional

import torch

from ..shm import ShmAllocator, attach, path_of
from .kvcache import layer_name
from .model import KVPlanes, ModelConfig


class ShardedPlanes:
    """One layer's K/V as the model sees it, stored as per-rank head shards."""

    def __init__(self, shards: list[KVPlanes]) -> None:
        self.shards = shards
        self.k = shards[0].k          # the model reads the block size from k.shape[1]

    def write(self, blocks: torch.Tensor, offsets: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        per = k.shape[1] // len(self.shards)
        for r, p in enumerate(self.shards):
            p.write(blocks, offsets, k[:, r * per:(r + 1) * per], v[:, r * per:(r + 1) * per])

    def gather(self, block_table: list[int], n: int) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [p.gather(block_table, n) for p in self.shards]
        return torch.cat([k for k, _ in parts], 1), torch.cat([v for _, v in parts], 1)


class ShardedKVCache:
    """Per-rank flash-layout tensors (2, NB, BS, KH/tp, D) per layer, and the model's view."""

    def __init__(self, cfg: ModelConfig, tp: int, num_blocks: int, block_size: int, dtype: torch.dtype,
                 fill_seed: int = 99) -> None:
        if cfg.kv_heads % tp:
            raise ValueError(f"kv_heads {cfg.kv_heads} is not divisible by tp {tp}")
        self.num_blocks, self.block_size, self.layout, self.mla = num_blocks, block_size, "flash", False
        self.cross_layer_tensor = None
        self.alloc = ShmAllocator(prefix="kvtier-refengine-tp")
        shape = (2, num_blocks, block_size, cfg.kv_heads // tp, cfg.head_dim)
        g = torch.Generator().manual_seed(fill_seed)
        self.rank_tensors: list[dict[str, torch.Tensor]] = []
        for _ in range(tp):
            ts = {}
            for i in range(cfg.layers):
                t = self.alloc.empty(shape, dtype)
                t.copy_(torch.randn(t.shape, generator=g).to(dtype))   # garbage, as in PagedKVCache
                ts[layer_name(i)] = t
            self.rank_tensors.append(ts)
        self.planes = [ShardedPlanes([KVPlanes(ts[layer_name(i)][0], ts[layer_name(i)][1])
                                      for ts in self.rank_tensors]) for i in range(cfg.layers)]
        self.tensors = self.rank_tensors[0]

    def close(self) -> None:
        self.alloc.close()


def _worker_main(conn: Any, cfg: Any, kvc: Any, tensors: dict[str, tuple[str, tuple[int, ...], Any]]) -> None:
    """A TP rank's process: its worker connector over its KV shard, driven call by call."""
    import sys

    from ..vllm import KVTierConnector
    from ..vllm.compat import Role

    try:
        w = KVTierConnector(cfg, Role.WORKER, kvc)
        w.register_kv_caches({name: attach(path, shape, dtype) for name, (path, shape, dtype) in tensors.items()})
        conn.send(("ok", {"mode": w._worker.mode, "rank": w._worker.rank}))
    except Exception as exc:  # noqa: BLE001 - reported to the engine process
        conn.send(("error", repr(exc)))
        return
    while True:
        op, args = conn.recv()
        try:
            if op == "close":
                w.shutdown()
                conn.send(("ok", None))
                return
            if op == "step":
                meta, finished, layers = args
                w.bind_connector_metadata(meta)
                w.handle_preemptions(meta)
                w.start_load_kv(None)
                for name in layers:        # the layer calls of a forward, in order
                    w.wait_for_layer_load(name)
                    w.save_kv_layer(name, None, None)
                w.wait_for_save()
                conn.send(("ok", (w.get_finished(finished), w.get_block_ids_with_load_errors())))
                w.clear_connector_metadata()
            elif op == "stats":
                conn.send(("ok", dict(w._worker.stats)))
        except Exception as exc:  # noqa: BLE001
            print(f"kvtier refengine tp worker: {exc!r}", file=sys.stderr)
            conn.send(("error", repr(exc)))


class TPWorkers:
    """The engine's view of its TP worker processes: one connector-worker-shaped object."""

    def __init__(self, cfg_for_rank: Any, kvc: Any, cache: ShardedKVCache) -> None:
        ctx = mp.get_context("spawn")
        self.conns = []
        self.procs = []
        self.info = []
        for r, ts in enumerate(cache.rank_tensors):
            parent, child = ctx.Pipe()
            spec = {name: (path_of(t), tuple(t.shape), t.dtype) for name, t in ts.items()}
            p = ctx.Process(target=_worker_main, args=(child, cfg_for_rank(r), kvc, spec), daemon=True)
            p.start()
            self.conns.append(parent)
            self.procs.append(p)
        for c in self.conns:
            status, info = c.recv()
            if status != "ok":
                raise RuntimeError(f"TP worker failed to start: {info}")
            self.info.append(info)
        self.prefer_cross_layer_blocks = False
        self._meta: Any = None
        self._layers: list[str] = []
        self._errors: set[int] = set()
        self._send: dict[str, set[int]] = {}
        self._recv: dict[str, set[int]] = {}

    # the connector calls RefEngine._execute makes, forwarded per step
    def bind_connector_metadata(self, meta: Any) -> None:
        self._meta, self._layers = meta, []

    def handle_preemptions(self, meta: Any) -> None:
        """Forwarded with the step (each rank calls it before start_load_kv)."""

    def start_load_kv(self, forward_context: Any) -> None:
        """Forwarded with the step."""

    def wait_for_layer_load(self, name: str) -> None:
        self._layers.append(name)

    def save_kv_layer(self, name: str, kv_layer: Any, attn_metadata: Any) -> None:
        """Forwarded with the step."""

    def wait_for_save(self) -> None:
        """Forwarded with the step."""

    def get_finished(self, finished: set[str]) -> tuple[Optional[set[str]], Optional[set[str]]]:
        # The forward already ran in this process; each rank now replays this step's connector
        # calls in vLLM's order. A load issued in start_load_kv lands in blocks of requests that
        # are not in this step's batch, so running the forward first changes nothing.
        for c in self.conns:
            c.send(("step", (self._meta, set(finished or ()), list(self._layers))))
        for r, c in enumerate(self.conns):
            status, out = c.recv()
            if status != "ok":
                raise RuntimeError(f"TP worker {r}: {out}")
            (snd, rcv), errs = out
            self._errors |= set(errs)
            for rid in snd or ():
                self._send.setdefault(rid, set()).add(r)
            for rid in rcv or ():
                self._recv.setdefault(rid, set()).add(r)
        n = len(self.conns)
        done_s = {rid for rid, rs in self._send.items() if len(rs) == n}
        done_r = {rid for rid, rs in self._recv.items() if len(rs) == n}
        for rid in done_s:
            del self._send[rid]
        for rid in done_r:
            del self._recv[rid]
        return done_s or None, done_r or None

    def get_block_ids_with_load_errors(self) -> set[int]:
        errs, self._errors = self._errors, set()
        return errs

    def clear_connector_metadata(self) -> None:
        self._meta = None

    def stats(self) -> list[dict[str, int]]:
        out = []
        for c in self.conns:
            c.send(("stats", None))
            out.append(c.recv()[1])
        return out

    def shutdown(self) -> None:
        for c in self.conns:
            try:
                c.send(("close", None))
                c.recv()
            except (EOFError, OSError):
                pass
        for p in self.procs:
            p.join(10)
