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
                extra: Optional[dict] = None, role: str = "kv_both") -> Any:
    ex = {"kvtier_socket": socket, "kvtier_timeout_s": 3.0,
          "kvtier_retry_interval_s": 0.2, **(extra or {})}
    return SimpleNamespace(
        model_config=SimpleNamespace(model=model, dtype=dtype, use_mla=False),
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


def kv_value(token: int, pos: int, layer: int, kv: int) -> torch.Tensor:
    """What 'attention' writes for one token: depends on token, position, layer, K/V."""
    base = (token * 31 + pos * 7 + layer * 1009 + kv * 5003) % 65521
    return (torch.arange(HEADS * HEAD_DIM, dtype=torch.float32).view(HEADS, HEAD_DIM) + base) % 2048


@dataclass
class StepResult:
    external_tokens: int
    computed_from: int
    load_errors: set[int]
    finished_sending: set[str]
    block_table: list[int]


class MiniEngine:
    """One engine instance: a scheduler-side and a worker-side connector, its own KV tensors."""

    def __init__(self, socket: str, alloc: ShmAllocator, name: str = "engine", shm: bool = True,
                 **cfg: Any) -> None:
        """`shm=False` allocates plain CPU tensors the daemon cannot map (inline mode)."""
        self.name = name
        self.config = vllm_config(socket, **cfg)
        dtype = cfg.get("dtype", torch.float16)
        shape = (2, NUM_BLOCKS, BLOCK, HEADS, HEAD_DIM)
        self.kv = {f"model.layers.{i}.self_attn.attn": alloc.empty(shape, dtype) if shm else torch.empty(shape, dtype=dtype)
                   for i in range(LAYERS)}
        for t in self.kv.values():
            t.copy_(torch.randn(t.shape).to(dtype))  # garbage: unloaded, uncomputed KV must not look right
        kv_cache_config = SimpleNamespace(num_blocks=NUM_BLOCKS)
        self.scheduler = KVTierConnector(self.config, Role.SCHEDULER, kv_cache_config)
        self.worker = KVTierConnector(self.config, Role.WORKER, kv_cache_config)
        self.worker.register_kv_caches(self.kv)
        self.free = list(range(1, NUM_BLOCKS))  # block 0 is vLLM's null block
        self.finished: set[str] = set()
        self.held: dict[str, list[int]] = {}
        self.forward_context = SimpleNamespace(attn_metadata={}, no_compile_layers={})

    # -- one prefill request, start to finish ---------------------------------------

    def run(self, req: Request, *, before_worker: Any = None, after_start_load: Any = None) -> StepResult:
        rid = req.request_id
        ext, load_async = self.scheduler.get_num_new_matched_tokens(req, 0)
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
        w = self.worker
        w.bind_connector_metadata(so.kv_connector_metadata)
        w.start_load_kv(self.forward_context)
        if after_start_load is not None:
            after_start_load()
        if compute is not None:
            req, table, start = compute
            for layer, name in enumerate(self.kv):
                w.wait_for_layer_load(name)
                self._attention(layer, name, req.prompt_token_ids, table, start)
                w.save_kv_layer(name, self.kv[name], None)
            w.wait_for_save()
        done_sending, done_recving = w.get_finished(so.finished_req_ids)
        errors = w.get_block_ids_with_load_errors()
        w.clear_connector_metadata()
        self.scheduler.update_connector_output(SimpleNamespace(
            finished_sending=done_sending, finished_recving=done_recving, invalid_block_ids=errors))
        for req_id in done_sending or ():
            self.free.extend(self.held.pop(req_id))
        return errors, set(done_sending or ()), set(done_recving or ())

    def _attention(self, layer: int, name: str, tokens: list[int], table: list[int], start: int) -> None:
        t = self.kv[name]
        for pos in range(start, len(tokens)):
            b, off = table[pos // BLOCK], pos % BLOCK
            for kv in (0, 1):
                t[kv, b, off] = kv_value(tokens[pos], pos, layer, kv).to(t.dtype)

    def token_kv(self, table: list[int], pos: int) -> list[torch.Tensor]:
        """The KV bytes this engine holds for token `pos` of a request with block table `table`."""
        b, off = table[pos // BLOCK], pos % BLOCK
        return [self.kv[name][kv, b, off].clone() for name in self.kv for kv in (0, 1)]

    def expected_kv(self, tokens: list[int], pos: int) -> list[torch.Tensor]:
        dtype = next(iter(self.kv.values())).dtype
        return [kv_value(tokens[pos], pos, layer, kv).to(dtype) for layer in range(LAYERS) for kv in (0, 1)]

    def close(self) -> None:
        self.worker.shutdown()
        self.scheduler.shutdown()


def quiet_kvtier_logs() -> None:
    logging.getLogger("kvtier").setLevel(logging.DEBUG)
