"""A minimal vLLM-V1-shaped engine around the reference transformer.

Scheduler half (as vllm/v1/core/sched/scheduler.py does it, reduced):

    schedule():
      running requests first (decode, or the rest of a chunked prefill)
      then waiting requests, in arrival order:
        WAITING_FOR_REMOTE_KVS and not in finished_recving: skipped, stays waiting
          (the batch goes on without it); in finished_recving: its loaded blocks
          count as computed (len(blocks) * block_size, never the last token) or,
          after a failed load, num_computed_tokens as truncated below; → WAITING
        num_computed_tokens == 0: ext, async = get_num_new_matched_tokens(req, 0)
        async: allocate blocks for the ext tokens only, update_state_after_alloc(req,
          blocks, ext), → WAITING_FOR_REMOTE_KVS, nothing scheduled for it this step
        else: allocate for the tokens scheduled now, update_state_after_alloc(req,
          blocks, ext) (the second call, ext = 0, for a request whose load finished)
        not enough free blocks: stop scheduling waiting requests (no preemption)
      SchedulerOutput(new reqs, cached reqs, tokens per req, finished_req_ids)
      meta = connector.build_connector_meta(scheduler_output)

    update_from_output():
      invalid blocks (get_block_ids_with_load_errors): a waiting async request is
        truncated to its first failed block (recomputed once it is scheduled); a
        running request rewinds to it, the token sampled this step is discarded,
        and the next step recomputes from there (vLLM's "recompute" policy)
      finished_recving: a waiting request becomes ready; an aborted one frees its blocks
      sample (greedy), finish at max_new_tokens:
        connector.request_finished(req, block_ids) → True: the blocks are held
        until a worker's get_finished reports the request in finished_sending
      finished_sending → free the held blocks
      connector.update_connector_output(KVConnectorOutput(finished_sending,
        finished_recving, invalid_block_ids))

    abort(req_id): like finish_requests(FINISHED_ABORTED). A request aborted while
      WAITING_FOR_REMOTE_KVS keeps its blocks until finished_recving reports it (as
      vLLM's finish_requests delays freeing them): the daemon may still write them.

Worker half (as the model runner's KV connector mixin does it):

    bind_connector_metadata(meta); start_load_kv(forward_context)
    for each layer: wait_for_layer_load(name); attention (writes then reads the
                    paged cache through the block table); save_kv_layer(name, ...)
    wait_for_save(); get_finished(finished_req_ids);
    get_block_ids_with_load_errors(); clear_connector_metadata()
    (a step with nothing to compute runs the same calls without the forward,
     like vLLM's kv_connector_no_forward)

One engine is one scheduler connector plus one worker connector (TP=1) in the
same process, which is what vLLM's uniprocess executor does.

Hybrid models (ModelConfig.sliding_layers): two KV cache groups, as vLLM's hybrid
allocator makes them: group 0 the full-attention layers, group 1 the
sliding-window layers, each request with a block table per group from the one
block pool. The connector gets kv_cache_groups with FullAttentionSpec /
SlidingWindowSpec and request_finished_all_groups (SupportsHMA). Unlike vLLM,
this engine does not free a sliding-window group's blocks that fell out of the
window (it keeps them until the request ends); with `free_out_of_window=True`
it nulls them (block 0) the way vLLM's SlidingWindowManager does, before the
request finishes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Optional

import torch

from ..shm import ShmAllocator
from .kvcache import FlashAttentionCrossLayer, PagedKVCache, layer_name
from .model import ModelConfig, Segment, Transformer
from .vllm_shapes import CachedRequestData, KVCacheBlocks, NewRequestData, SchedulerOutput

BLOCK_SIZE = 16


# -- the objects vLLM hands the connector (the fields KVTierConnector reads) ----------------

@dataclass
class Request:
    request_id: str
    prompt_token_ids: list[int]
    max_new_tokens: int = 1
    cache_salt: Optional[str] = None
    output_token_ids: list[int] = field(default_factory=list)
    num_computed_tokens: int = 0
    # engine bookkeeping (not read by the connector)
    block_ids: list[int] = field(default_factory=list)
    sw_block_ids: list[int] = field(default_factory=list)   # hybrid: the sliding-window group's
    status: str = "WAITING"
    external_tokens: int = 0
    load_error_blocks: set[int] = field(default_factory=set)
    recomputed_from: Optional[int] = None
    first_logits: Optional[torch.Tensor] = None
    last_logits: Optional[torch.Tensor] = None
    t_arrival: float = 0.0
    t_load_start: Optional[float] = None
    t_load_done: Optional[float] = None
    load_errors_at_recv: Optional[set[int]] = None   # load_error_blocks when finished_recving came
    t_first_token: Optional[float] = None
    computed_tokens_total: int = 0

    @property
    def all_token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    @property
    def ttft_s(self) -> Optional[float]:
        return None if self.t_first_token is None else self.t_first_token - self.t_arrival


def vllm_config(socket: str, *, model_name: str, dtype: torch.dtype, mla: bool, role: str = "kv_both",
                extra: Optional[dict[str, Any]] = None, tp: int = 1) -> Any:
    ex = {"kvtier_socket": socket, **(extra or {})}
    return SimpleNamespace(
        model_config=SimpleNamespace(model=model_name, dtype=dtype, use_mla=mla),
        cache_config=SimpleNamespace(block_size=BLOCK_SIZE, cache_dtype="auto"),
        parallel_config=SimpleNamespace(tensor_parallel_size=tp, pipeline_parallel_size=1),
        kv_transfer_config=SimpleNamespace(kv_connector="KVTierConnector", kv_connector_module_path="kvtier.vllm",
                                           kv_role=role, kv_connector_extra_config=ex, engine_id="refengine"))


# -- the engine --------------------------------------------------------------------------------

class RefEngine:
    """`socket=None` runs without a connector (the recompute reference).

    hooks (test instruments): "after_build_meta"(meta) may edit the metadata
    before the worker sees it; "after_start_load"() runs between start_load_kv
    and the first layer (e.g. to kill the daemon mid-load).
    """

    def __init__(self, socket: Optional[str] = None, *, layout: str = "flash", dtype: torch.dtype = torch.float32,
                 num_blocks: int = 256, device: Any = None, model: ModelConfig = ModelConfig(),
                 model_name: str = "kvtier/refengine", extra: Optional[dict[str, Any]] = None,
                 role: str = "kv_both", token_budget: Optional[int] = None,
                 alloc: Optional[ShmAllocator] = None,
                 hooks: Optional[dict[str, Callable[..., Any]]] = None,
                 free_out_of_window: bool = False, tp: int = 1) -> None:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if token_budget is not None and token_budget % BLOCK_SIZE:
            raise ValueError("token_budget must be a multiple of the block size")
        self.device = torch.device(device)
        self.model = Transformer(model, dtype, self.device)
        self.tp = tp
        if tp > 1:
            # one worker process per rank, KV heads sharded over them (kvtier.refengine.tp)
            from .tp import ShardedKVCache

            if layout != "flash" or self.device.type != "cpu":
                raise ValueError("the TP mode runs the flash layout on CPU")
            self.cache: Any = ShardedKVCache(model, tp, num_blocks, BLOCK_SIZE, dtype)
        else:
            self.cache = PagedKVCache(model, layout, num_blocks, BLOCK_SIZE, dtype, self.device, alloc)
        self.token_budget = token_budget
        self.hooks = hooks or {}
        self.hybrid = bool(model.sliding_layers)
        self.free_out_of_window = free_out_of_window
        self.free_blocks = list(range(1, num_blocks))   # block 0 stays unused, like vLLM's null block
        self.waiting: list[Request] = []
        self.running: list[Request] = []
        self.finished: dict[str, Request] = {}
        self.held: dict[str, list[int]] = {}             # finished, blocks kept for an async save
        self.aborted_loading: dict[str, Request] = {}    # aborted mid-load, blocks kept until recv'd
        self.finished_recving_ids: set[str] = set()
        self.failed_recving_ids: set[str] = set()
        self.step_times: list[tuple[float, float, int]] = []   # (start, seconds, tokens computed)
        self._finished_ids: set[str] = set()              # for the next SchedulerOutput
        self.steps = 0
        self.scheduler = self.worker = None
        if socket is not None:
            from ..vllm import KVTierConnector
            from ..vllm.compat import Role

            if layout == "cross_layer":
                extra = {"kvtier_cross_layer_blocks": True, **(extra or {})}
            cfg = vllm_config(socket, model_name=model_name, dtype=dtype, mla=self.cache.mla, role=role,
                              extra=extra, tp=tp)
            kvc: Any = SimpleNamespace(num_blocks=num_blocks)
            if self.hybrid:
                from .vllm_shapes import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec, SlidingWindowSpec

                full = [layer_name(i) for i in range(model.layers) if i not in model.sliding_layers]
                sw = [layer_name(i) for i in model.sliding_layers]
                kvc = KVCacheConfig(num_blocks, [
                    KVCacheGroupSpec(full, FullAttentionSpec(BLOCK_SIZE)),
                    KVCacheGroupSpec(sw, SlidingWindowSpec(BLOCK_SIZE, model.sliding_window))])
            self.scheduler = KVTierConnector(cfg, Role.SCHEDULER, kvc)
            if tp > 1:
                from .tp import TPWorkers

                def rank_cfg(r: int) -> Any:
                    return vllm_config(socket, model_name=model_name, dtype=dtype, mla=False, role=role,
                                       extra={**(extra or {}), "kvtier_tp_rank": r}, tp=tp)

                self.worker = TPWorkers(rank_cfg, kvc, self.cache)
            else:
                self.worker = KVTierConnector(cfg, Role.WORKER, kvc)
            if tp > 1:
                pass                    # each rank's process registered its shard
            elif self.worker.prefer_cross_layer_blocks and self.cache.cross_layer_tensor is not None:
                # vLLM's model runner: with uniform layers and a backend that has the stride order,
                # the one cross-layer tensor instead of the per-layer dict
                self.worker.register_cross_layers_kv_cache(self.cache.cross_layer_tensor, FlashAttentionCrossLayer)
            else:
                self.worker.register_kv_caches(self.cache.tensors)
        self.forward_context = SimpleNamespace(attn_metadata={}, no_compile_layers={})

    # -- public -------------------------------------------------------------------------

    def add_request(self, req_id: str, prompt: list[int], max_new_tokens: int = 1,
                    cache_salt: Optional[str] = None) -> Request:
        req = Request(req_id, list(prompt), max_new_tokens, cache_salt)
        req.t_arrival = time.perf_counter()
        self.waiting.append(req)
        return req

    def generate(self, req_id: str, prompt: list[int], max_new_tokens: int = 1, **kw: Any) -> Request:
        """Runs one request to completion (then a step so finished_req_ids reach the worker)."""
        req = self.add_request(req_id, prompt, max_new_tokens, **kw)
        while req.status != "FINISHED":
            self.step()
        return req

    def abort(self, req_id: str) -> Request:
        """vLLM's finish_requests(FINISHED_ABORTED) for one request (waiting or running)."""
        req = next(r for r in self.waiting + self.running if r.request_id == req_id)
        (self.running if req in self.running else self.waiting).remove(req)
        loading = req.status == "WAITING_FOR_REMOTE_KVS" and req_id not in self.finished_recving_ids
        self.finished_recving_ids.discard(req_id)
        self.failed_recving_ids.discard(req_id)
        req.status = "FINISHED_ABORTED"
        self.finished[req_id] = req
        self._finished_ids.add(req_id)
        hold = self._connector_finished(req)
        assert not (hold and loading), "a save of a request whose load is in flight"
        if loading:
            self.aborted_loading[req_id] = req
        elif hold:
            self.held[req_id] = _all_blocks(req)
        else:
            self.free_blocks.extend(_all_blocks(req))
        return req

    def _groups(self, req: Request) -> tuple[list[int], ...]:
        return (list(req.block_ids), list(req.sw_block_ids)) if self.hybrid else (list(req.block_ids),)

    def _connector_finished(self, req: Request) -> bool:
        """vLLM's _connector_finished: request_finished_all_groups for a SupportsHMA connector."""
        if self.scheduler is None:
            return False
        fn = getattr(self.scheduler, "request_finished_all_groups", None)
        if fn is not None:
            hold, _ = fn(req, self._groups(req))
        else:
            hold, _ = self.scheduler.request_finished(req, list(req.block_ids))
        return hold

    def drain(self, timeout_s: float = 30.0) -> None:
        """Idle steps until every held block is back (saves acknowledged)."""
        deadline = time.monotonic() + timeout_s
        self.step()
        while (self.held or self.aborted_loading or self._finished_ids) and time.monotonic() < deadline:
            self.step()
            if self.held or self.aborted_loading:
                time.sleep(0.01)
        if self.held or self.aborted_loading:
            raise TimeoutError(f"transfers of {sorted(self.held) + sorted(self.aborted_loading)} "
                               f"not acknowledged in {timeout_s} s")

    def close(self) -> None:
        if self.worker is not None:
            try:
                self.drain(timeout_s=10.0)
            except TimeoutError:
                pass
            self.worker.shutdown()
        if self.scheduler is not None:
            self.scheduler.shutdown()
        self.cache.close()

    # -- one step -------------------------------------------------------------------------

    def step(self) -> SchedulerOutput:
        t0 = time.perf_counter()
        so = self._schedule()
        if self.scheduler is not None:
            so.kv_connector_metadata = self.scheduler.build_connector_meta(so)
            if "after_build_meta" in self.hooks:
                self.hooks["after_build_meta"](so.kv_connector_metadata)
        logits, sending, recving, invalid = self._execute(so)
        self._update_from_output(so, logits, sending, recving, invalid)
        self.steps += 1
        self.step_times.append((t0, time.perf_counter() - t0, so.total_num_scheduled_tokens))
        if not so.total_num_scheduled_tokens:
            time.sleep(0.001)   # only loads or saves in flight: do not spin
        return so

    def _blocks_needed(self, req: Request, upto_tokens: int) -> int:
        return max(-(-upto_tokens // BLOCK_SIZE) - len(req.block_ids), 0)

    def _alloc(self, req: Request, upto_tokens: int) -> tuple[list[int], ...]:
        need = self._blocks_needed(req, upto_tokens)
        groups = 2 if self.hybrid else 1
        if need * groups > len(self.free_blocks):
            raise RuntimeError(f"out of KV blocks ({need * groups} needed, {len(self.free_blocks)} free); "
                               "this engine does not preempt: give it more num_blocks")
        new = [self.free_blocks.pop(0) for _ in range(need)]
        req.block_ids.extend(new)
        if not self.hybrid:
            return (new,)
        new_sw = [self.free_blocks.pop(0) for _ in range(need)]
        req.sw_block_ids.extend(new_sw)
        return (new, new_sw)

    def _null_out_of_window(self, req: Request) -> None:
        """vLLM's SlidingWindowManager.remove_skipped_blocks: sliding-window blocks no later
        token reads go back to the pool and the table holds the null block (0) there."""
        if not (self.hybrid and self.free_out_of_window):
            return
        skipped = max(0, req.num_computed_tokens - self.model.cfg.sliding_window + 1) // BLOCK_SIZE
        for i in range(min(skipped, len(req.sw_block_ids))):
            if req.sw_block_ids[i] != 0:
                self.free_blocks.append(req.sw_block_ids[i])
                req.sw_block_ids[i] = 0

    def _schedule(self) -> SchedulerOutput:
        budget = self.token_budget if self.token_budget is not None else 1 << 62
        new_reqs: list[NewRequestData] = []
        cached = CachedRequestData()
        num: dict[str, int] = {}
        for req in self.running:
            n = min(req.num_tokens - req.num_computed_tokens, budget)
            if n <= 0:
                continue
            new = self._alloc(req, req.num_computed_tokens + n)
            cached.req_ids.append(req.request_id)
            cached.new_block_ids.append(new if new[0] else None)
            cached.num_computed_tokens.append(req.num_computed_tokens)
            num[req.request_id] = n
            budget -= n
        skipped: list[Request] = []
        while self.waiting and budget > 0:
            req = self.waiting.pop(0)
            if req.status == "WAITING_FOR_REMOTE_KVS" and not self._remote_kvs_ready(req):
                skipped.append(req)
                continue
            ext, load_async = 0, False
            if req.num_computed_tokens == 0:
                local = 0                                   # no local prefix cache in this engine
                if self.scheduler is not None:
                    ext, load_async = self.scheduler.get_num_new_matched_tokens(req, local)
                    if ext is None:                 # vLLM: not determined yet, ask again next step
                        assert not load_async
                        skipped.append(req)
                        continue
                    assert local + ext < req.num_tokens, "the connector claimed the last prompt token"
                    assert ext or not load_async, "async must be False when nothing is matched"
                computed = local + ext
            else:                                           # after an asynchronous load
                computed = req.num_computed_tokens
            n = 0 if load_async else min(req.num_tokens - computed, budget)
            if self._blocks_needed(req, computed + n) * (2 if self.hybrid else 1) > len(self.free_blocks):
                self.waiting.insert(0, req)                 # vLLM: allocate_slots is None, stop here
                break
            self._alloc(req, computed + n)
            if self.scheduler is not None:
                self.scheduler.update_state_after_alloc(req, KVCacheBlocks(*self._groups(req)), ext)
            if ext:
                req.external_tokens = ext
            if load_async:
                req.status = "WAITING_FOR_REMOTE_KVS"
                req.t_load_start = time.perf_counter()
                skipped.append(req)
                continue
            req.num_computed_tokens = computed
            req.status = "RUNNING"
            self.running.append(req)
            new_reqs.append(NewRequestData(req.request_id, list(req.prompt_token_ids), self._groups(req),
                                           computed))
            num[req.request_id] = n
            budget -= n
        self.waiting[:0] = skipped
        finished, self._finished_ids = self._finished_ids, set()
        return SchedulerOutput(new_reqs, cached, num, finished, total_num_scheduled_tokens=sum(num.values()))

    def _remote_kvs_ready(self, req: Request) -> bool:
        """vLLM's _update_waiting_for_remote_kv: True (and status WAITING) once the load ended."""
        rid = req.request_id
        if rid not in self.finished_recving_ids:
            return False
        self.finished_recving_ids.discard(rid)
        if rid in self.failed_recving_ids:                  # truncated in _update_from_output
            self.failed_recving_ids.discard(rid)
            if req.num_computed_tokens == 0:                # nothing valid: free, look up again
                self.free_blocks.extend(_all_blocks(req))
                req.block_ids = []
                req.sw_block_ids = []
        else:
            computed = min(len(req.block_ids) * BLOCK_SIZE, req.num_tokens)
            req.num_computed_tokens = computed - 1 if computed == req.num_tokens else computed
        req.status = "WAITING"
        return True

    def _execute(self, so: SchedulerOutput) -> tuple[dict[str, torch.Tensor], set[str], set[str], set[int]]:
        """The worker: connector calls around the forward pass."""
        w = self.worker
        if w is not None:
            w.bind_connector_metadata(so.kv_connector_metadata)
            w.handle_preemptions(so.kv_connector_metadata)   # every step, as current vLLM
            w.start_load_kv(self.forward_context)
            if "after_start_load" in self.hooks:
                self.hooks["after_start_load"]()
        logits: dict[str, torch.Tensor] = {}
        if so.total_num_scheduled_tokens:
            by_id = {r.request_id: r for r in self.running}
            segs = {}
            for rid, n in so.num_scheduled_tokens.items():
                r = by_id[rid]
                segs[rid] = Segment(r.all_token_ids, r.num_computed_tokens, r.num_computed_tokens + n,
                                    r.block_ids)
                self.model.embed(segs[rid])
            sliding = set(self.model.cfg.sliding_layers)
            with torch.no_grad():
                for i, planes in enumerate(self.cache.planes):
                    name = layer_name(i)
                    if w is not None:
                        w.wait_for_layer_load(name)
                    for rid, seg in segs.items():
                        # each KV cache group has its own block table
                        seg.block_table = by_id[rid].sw_block_ids if i in sliding else by_id[rid].block_ids
                        self.model.layer(i, planes, seg)
                    if w is not None:
                        w.save_kv_layer(name, self.cache.tensors[name], None)
                for rid, seg in segs.items():
                    if seg.end == by_id[rid].num_tokens:
                        logits[rid] = self.model.logits(seg)
        sending: set[str] = set()
        recving: set[str] = set()
        invalid: set[int] = set()
        if w is not None:
            w.wait_for_save()
            done_sending, done_recving = w.get_finished(so.finished_req_ids)
            sending = set(done_sending or ())
            recving = set(done_recving or ())
            invalid = set(w.get_block_ids_with_load_errors())
            w.clear_connector_metadata()
        return logits, sending, recving, invalid

    def _update_from_output(self, so: SchedulerOutput, logits: dict[str, torch.Tensor], sending: set[str],
                            recving: set[str], invalid: set[int]) -> None:
        now = time.perf_counter()
        for req in self.waiting:
            if req.status == "WAITING_FOR_REMOTE_KVS" and invalid:
                self._truncate_async_load(req, invalid)
        for rid in recving:
            aborted = self.aborted_loading.pop(rid, None)
            if aborted is not None:
                self.free_blocks.extend(_all_blocks(aborted))   # the daemon answered: no more writes
                continue
            req = next((r for r in self.waiting if r.request_id == rid), None)
            if req is not None and req.status == "WAITING_FOR_REMOTE_KVS":
                self.finished_recving_ids.add(rid)
                req.t_load_done = now
                req.load_errors_at_recv = set(req.load_error_blocks)
        for req in list(self.running):
            n = so.num_scheduled_tokens.get(req.request_id)
            if n is None:
                continue
            start = req.num_computed_tokens
            bad = sorted({i for g in self._groups(req) for i, b in enumerate(g) if b in invalid and b != 0})
            if bad:
                # Rewind to the first block whose load failed: every later token's KV was computed
                # against it. The token sampled this step (if any) is discarded.
                req.load_error_blocks |= {b for g in self._groups(req) for b in g if b in invalid and b != 0}
                first = bad[0] * BLOCK_SIZE
                req.recomputed_from = first if req.recomputed_from is None else min(req.recomputed_from, first)
                req.num_computed_tokens = min(first, start)
                req.computed_tokens_total += n
                continue
            req.num_computed_tokens = start + n
            req.computed_tokens_total += n
            self._null_out_of_window(req)
            lg = logits.get(req.request_id)
            if lg is None:
                continue
            if req.first_logits is None:
                req.first_logits = lg
                req.t_first_token = now
            req.last_logits = lg
            req.output_token_ids.append(int(torch.argmax(lg)))
            if len(req.output_token_ids) >= req.max_new_tokens:
                self._finish(req)
        for rid in sending:
            blocks = self.held.pop(rid, None)
            if blocks is not None:
                self.free_blocks.extend(blocks)
        if self.scheduler is not None:
            self.scheduler.update_connector_output(SimpleNamespace(
                finished_sending=sending or None, finished_recving=recving or None, invalid_block_ids=invalid))

    def _truncate_async_load(self, req: Request, invalid: set[int]) -> None:
        """vLLM's _update_requests_with_invalid_blocks for a request still loading."""
        rid = req.request_id
        tokens = req.num_computed_tokens if rid in self.failed_recving_ids else len(req.block_ids) * BLOCK_SIZE
        nb = -(-tokens // BLOCK_SIZE)
        groups = [g[:nb] for g in self._groups(req)]
        bad = sorted({i for g in groups for i, b in enumerate(g) if b in invalid and b != 0})
        if not bad:
            return
        req.load_error_blocks |= {b for g in groups for b in g if b in invalid and b != 0}
        first = bad[0] * BLOCK_SIZE
        req.recomputed_from = first if req.recomputed_from is None else min(req.recomputed_from, first)
        req.num_computed_tokens = min(first, tokens)
        self.failed_recving_ids.add(rid)

    def _finish(self, req: Request) -> None:
        self.running.remove(req)
        req.status = "FINISHED"
        self.finished[req.request_id] = req
        self._finished_ids.add(req.request_id)
        hold = self._connector_finished(req)
        if hold:
            self.held[req.request_id] = _all_blocks(req)
        else:
            self.free_blocks.extend(_all_blocks(req))


def _all_blocks(req: Request) -> list[int]:
    """Every block a request holds, in all KV cache groups (the null block 0 is not one)."""
    return [b for b in req.block_ids + req.sw_block_ids if b != 0]
