"""Stand-ins for the vLLM objects the connector sees, and a tiny engine that
drives KVTierConnector in vLLM's call order (v1 Scheduler + model runner mixin):

  scheduler: get_num_new_matched_tokens → (allocate) update_state_after_alloc
             → build_connector_meta;  request_finished when the request ends.
             A hit is an asynchronous load: steps without the request until
             get_finished reports it in finished_recving, then the second
             update_state_after_alloc (0 external tokens) and its prefill from the
             first failed block (or the end of the load)
  worker:    bind_connector_metadata → start_load_kv → per layer
             wait_for_layer_load / (attention) / save_kv_layer → wait_for_save
             → get_finished(finished_req_ids) → get_block_ids_with_load_errors
             → clear_connector_metadata

"Attention" writes a deterministic KV value for every computed token into the
real torch CPU KV tensors (allocated in /dev/shm), so loaded KV can be compared
byte for byte with what the engine would have computed.
"""
from __future__ import annotations

import logging
import pickle
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Optional

import torch

from kvtier.refengine.vllm_shapes import CachedRequestData, KVCacheBlocks, NewRequestData, SchedulerOutput
from kvtier.shm import ShmAllocator
from kvtier.vllm import KVTierConnector
from kvtier.vllm.compat import Role

BLOCK = 16
LAYERS = 4
HEADS = 2
HEAD_DIM = 8
NUM_BLOCKS = 200


def vllm_config(socket: str, *, model: str = "test/llama", dtype: Any = torch.float16, tp_size: int = 1,
                extra: Optional[dict] = None, role: str = "kv_both", mla: bool = False) -> Any:
    ex = {"kvtier_socket": socket, "kvtier_timeout_s": 3.0,
          "kvtier_retry_interval_s": 0.2, **(extra or {})}
    return SimpleNamespace(
        model_config=SimpleNamespace(model=model, dtype=dtype, use_mla=mla),
        cache_config=SimpleNamespace(block_size=BLOCK, cache_dtype="auto"),
        parallel_config=SimpleNamespace(tensor_parallel_size=tp_size, pipeline_parallel_size=1),
        kv_transfer_config=SimpleNamespace(kv_connector="KVTierConnector", kv_connector_module_path="kvtier.vllm",
                                           kv_role=role, kv_connector_extra_config=ex, engine_id="e"))


@dataclass
class Request:
    request_id: str
    prompt_token_ids: list[int]
    num_computed_tokens: int = 0
    output_token_ids: list[int] = field(default_factory=list)

    @property
    def all_token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids


def kv_value(token: int, pos: int, layer: int, kv: int, rank: int = 0) -> torch.Tensor:
    """What 'attention' writes for one token: depends on token, position, layer, K/V and the
    TP rank (each rank holds its own heads, so its shard differs)."""
    base = (token * 31 + pos * 7 + layer * 1009 + kv * 5003 + rank * 17011) % 65521
    return (torch.arange(HEADS * HEAD_DIM, dtype=torch.float32).view(HEADS, HEAD_DIM) + base) % 2048


@dataclass
class StepResult:
    external_tokens: int
    computed_from: int
    load_errors: set[int]
    finished_sending: set[str]
    block_table: list[int]


class MiniEngine:
    """One engine instance: a scheduler-side connector and one worker-side connector per TP rank
    in `ranks` (each with its own KV tensors, rank-dependent values; vLLM runs them in separate
    processes, here they share one), like vLLM's executor aggregating their get_finished."""

    def __init__(self, socket: str, alloc: ShmAllocator, name: str = "engine", shm: bool = True,
                 ranks: Optional[list[int]] = None, stats_sink: Any = None, **cfg: Any) -> None:
        """`shm=False` allocates plain CPU tensors the daemon cannot map (inline mode).
        `ranks`: the TP ranks to run workers for (default: every rank of tp_size), each told
        its rank through kvtier_tp_rank as vLLM's parallel state would.
        `stats_sink(data)`: collect connector stats after every step as vLLM does (see
        _step_stats) and hand the data dict to it, as SchedulerStats carries it to the loggers."""
        self.name = name
        self.stats_sink = stats_sink
        tp_size = cfg.get("tp_size", 1)
        self.ranks = list(range(tp_size)) if ranks is None else list(ranks)
        self.config = vllm_config(socket, **cfg)
        dtype = cfg.get("dtype", torch.float16)
        shape = (2, NUM_BLOCKS, BLOCK, HEADS, HEAD_DIM)
        kv_cache_config = SimpleNamespace(num_blocks=NUM_BLOCKS)
        self.scheduler = KVTierConnector(self.config, Role.SCHEDULER, kv_cache_config)
        self.kvs: list[dict[str, torch.Tensor]] = []
        self.workers: list[KVTierConnector] = []
        for rank in self.ranks:
            kv = {f"model.layers.{i}.self_attn.attn": alloc.empty(shape, dtype) if shm
                  else torch.empty(shape, dtype=dtype) for i in range(LAYERS)}
            for t in kv.values():
                t.copy_(torch.randn(t.shape).to(dtype))  # garbage: unloaded, uncomputed KV must not look right
            wcfg = self.config
            if tp_size > 1 and "kvtier_tp_rank" not in self.config.kv_transfer_config.kv_connector_extra_config:
                wcfg = vllm_config(socket, **{**cfg, "extra": {**cfg.get("extra", {}), "kvtier_tp_rank": rank}})
            w = KVTierConnector(wcfg, Role.WORKER, kv_cache_config)
            w.register_kv_caches(kv)
            self.kvs.append(kv)
            self.workers.append(w)
        self.kv = self.kvs[0]
        self.worker = self.workers[0]
        self.free = list(range(1, NUM_BLOCKS))  # block 0 is vLLM's null block
        self.finished: set[str] = set()
        self.held: dict[str, list[int]] = {}
        self._pending_send: dict[str, set[int]] = {}   # req -> workers that reported it
        self._pending_recv: dict[str, set[int]] = {}
        self.forward_context = SimpleNamespace(attn_metadata={}, no_compile_layers={})

    # -- one prefill request, start to finish ---------------------------------------

    def run(self, req: Request, *, before_worker: Any = None, after_start_load: Any = None) -> StepResult:
        rid = req.request_id
        ext, load_async = matched_tokens(self.scheduler, req, 0)
        assert load_async == (ext > 0), "a hit is loaded asynchronously, a miss is not"
        n = len(req.prompt_token_ids)
        assert ext < n, "the connector must leave at least one token to compute"
        table = [self.free.pop(0) for _ in range(-(-n // BLOCK))]
        self.scheduler.update_state_after_alloc(req, KVCacheBlocks(table), ext)
        errors: set[int] = set()
        sending: set[str] = set()
        start = ext
        if load_async:
            so = self._output([], {})
            if before_worker is not None:
                before_worker()
            e, s, recving = self._worker_step(so, compute=None, after_start_load=after_start_load)
            errors, sending = errors | e, sending | s
            deadline = time.monotonic() + 30
            while rid not in recving:
                assert time.monotonic() < deadline, "the load was never reported in finished_recving"
                time.sleep(0.005)
                e, s, recving = self._worker_step(self._output([], {}), compute=None)
                errors, sending = errors | e, sending | s
            bad = [i for i, b in enumerate(table[:-(-ext // BLOCK)]) if b in errors]
            start = bad[0] * BLOCK if bad else ext
            self.scheduler.update_state_after_alloc(req, KVCacheBlocks(table), 0)
            before_worker = after_start_load = None
        so = self._output([NewRequestData(rid, req.prompt_token_ids, (table,), start)], {rid: n - start})
        if before_worker is not None:
            before_worker()
        e, s, _ = self._worker_step(so, compute=(req, table, start), after_start_load=after_start_load)
        errors, sending = errors | e, sending | s
        req.num_computed_tokens = n
        hold, _ = self.scheduler.request_finished(req, (table,))
        self.finished.add(rid)
        if hold:
            self.held[rid] = table
        else:
            self.free.extend(table)
        sending |= self.idle_step()
        deadline = time.monotonic() + 30
        while rid in self.held and time.monotonic() < deadline:   # polled, never waited for
            time.sleep(0.005)
            sending |= self.idle_step()
        return StepResult(ext, start, errors, sending, table)

    def _output(self, new: list[NewRequestData], num: dict[str, int]) -> SchedulerOutput:
        so = SchedulerOutput(new, CachedRequestData(), num, set(self.finished),
                             total_num_scheduled_tokens=sum(num.values()))
        self.finished.clear()
        so.kv_connector_metadata = self.scheduler.build_connector_meta(so)
        return so

    def idle_step(self) -> set[str]:
        """A step with nothing to compute (vLLM's kv_connector_no_forward)."""
        _, sending, _ = self._worker_step(self._output([], {}), compute=None)
        return sending

    def _worker_step(self, so: SchedulerOutput, compute: Any,
                     after_start_load: Any = None) -> tuple[set[int], set[str], set[str]]:
        """Every rank's worker runs the step; a request is finished sending/recving once every
        rank reported it (vLLM's KVOutputAggregator), load errors are the union."""
        errors: set[int] = set()
        sending_by: list[set[str]] = []
        recving_by: list[set[str]] = []
        for idx, w in enumerate(self.workers):
            w.bind_connector_metadata(so.kv_connector_metadata)
            w.handle_preemptions(so.kv_connector_metadata)   # every step, as current vLLM
            w.start_load_kv(self.forward_context)
            if after_start_load is not None and idx == len(self.workers) - 1:
                after_start_load()
            if compute is not None:
                req, table, start = compute
                for layer, name in enumerate(self.kvs[idx]):
                    w.wait_for_layer_load(name)
                    self._attention(idx, layer, name, req.prompt_token_ids, table, start)
                    w.save_kv_layer(name, self.kvs[idx][name], None)
                w.wait_for_save()
            done_sending, done_recving = w.get_finished(so.finished_req_ids)
            errors |= w.get_block_ids_with_load_errors()
            w.clear_connector_metadata()
            sending_by.append(set(done_sending or ()))
            recving_by.append(set(done_recving or ()))
        for i, (snd, rcv) in enumerate(zip(sending_by, recving_by)):
            for rid in snd:
                self._pending_send.setdefault(rid, set()).add(i)
            for rid in rcv:
                self._pending_recv.setdefault(rid, set()).add(i)
        n = len(self.workers)
        done_sending = {r for r, s in self._pending_send.items() if len(s) == n}
        done_recving = {r for r, s in self._pending_recv.items() if len(s) == n}
        for r in done_sending:
            del self._pending_send[r]
        for r in done_recving:
            del self._pending_recv[r]
        self.scheduler.update_connector_output(SimpleNamespace(
            finished_sending=done_sending, finished_recving=done_recving, invalid_block_ids=errors))
        for req_id in done_sending:
            self.free.extend(self.held.pop(req_id))
        if self.stats_sink is not None:
            data = self._step_stats()
            if data is not None:
                self.stats_sink(data)
        return errors, done_sending, done_recving

    def _step_stats(self) -> Optional[dict]:
        """vLLM's path for one step: each worker's get_kv_connector_stats() crosses to the engine
        core (pickled) and KVOutputAggregator aggregates them; Scheduler.update_from_output adds the
        scheduler connector's own stats when not empty, and SchedulerStats carries `.data` to the
        front-end's loggers (another process again)."""
        total = None
        for w in self.workers:
            st = w.get_kv_connector_stats()
            if st is None:
                continue
            st = pickle.loads(pickle.dumps(st))
            total = st if total is None else total.aggregate(st)
        sched = self.scheduler.get_kv_connector_stats()
        if sched is not None and not sched.is_empty():
            total = sched if total is None else total.aggregate(sched)
        return None if total is None else pickle.loads(pickle.dumps(total.data))

    def _attention(self, idx: int, layer: int, name: str, tokens: list[int], table: list[int],
                   start: int) -> None:
        t = self.kvs[idx][name]
        for pos in range(start, len(tokens)):
            b, off = table[pos // BLOCK], pos % BLOCK
            for kv in (0, 1):
                t[kv, b, off] = kv_value(tokens[pos], pos, layer, kv, self._kv_rank(idx)).to(t.dtype)

    def token_kv(self, table: list[int], pos: int, idx: int = 0) -> list[torch.Tensor]:
        """The KV bytes worker `idx` holds for token `pos` of a request with block table `table`."""
        b, off = table[pos // BLOCK], pos % BLOCK
        kvs = self.kvs[idx]
        return [kvs[name][kv, b, off].clone() for name in kvs for kv in (0, 1)]

    def expected_kv(self, tokens: list[int], pos: int, idx: int = 0) -> list[torch.Tensor]:
        dtype = next(iter(self.kv.values())).dtype
        return [kv_value(tokens[pos], pos, layer, kv, self._kv_rank(idx)).to(dtype)
                for layer in range(LAYERS) for kv in (0, 1)]

    def _kv_rank(self, idx: int) -> int:
        """MLA: every rank holds the same latent KV; otherwise each rank its own heads."""
        return 0 if self.config.model_config.use_mla else self.ranks[idx]

    def close(self) -> None:
        for w in self.workers:
            w.shutdown()
        self.scheduler.shutdown()


def quiet_kvtier_logs() -> None:
    logging.getLogger("kvtier").setLevel(logging.DEBUG)


def matched_tokens(scheduler: Any, req: Any, num_computed_tokens: int) -> tuple[int, bool]:
    """get_num_new_matched_tokens asked as vLLM asks it: again in a later step while it answers
    (None, False), i.e. while the Lookup's answer has not come within kvtier_lookup_wait_ms."""
    ext, load_async = scheduler.get_num_new_matched_tokens(req, num_computed_tokens)
    deadline = time.monotonic() + 30
    while ext is None:
        assert not load_async and time.monotonic() < deadline
        time.sleep(0.001)
        ext, load_async = scheduler.get_num_new_matched_tokens(req, num_computed_tokens)
    return ext, load_async
