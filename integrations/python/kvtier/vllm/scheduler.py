"""Scheduler half of KVTierConnector: Lookup, lease, hand block ids to workers.

    get_num_new_matched_tokens ──Lookup (one per tp/pp rank namespace)──▶ kvtierd
        keeps the leases; claims min(hit, prompt_len - 1) tokens beyond the local hit and
        returns (n, True): the load is asynchronous (WAITING_FOR_REMOTE_KVS)
    update_state_after_alloc    num_external_tokens > 0: a LoadSpec from the blocks just
                                allocated for them; 0 (the second call after the load, or
                                no load): nothing, the lookup's leases are released
    build_connector_meta        this step's LoadSpecs + SaveSpecs; releases leases of
                                lookups that were not allocated
    update_connector_output     finished_recving ends a load; invalid_block_ids (failed
                                loads, recomputed): those chunks no longer count as cached
                                for request_finished, and the request is not offered again
    request_finished            SaveSpec for the request's full chunks; returns True
                                so vLLM holds the blocks until workers report
                                StoreCopied through get_finished. A request aborted while
                                its load is in flight returns False: vLLM itself keeps a
                                WAITING_FOR_REMOTE_KVS request's blocks until the worker
                                reports it in finished_recving (the daemon has answered)

Never raises into vLLM: an unreachable daemon is a miss (warned once).
Requests with a cache_salt, multimodal inputs, a LoRA adapter or prompt
embeddings are neither looked up nor saved (their KV is not keyed by tokens alone).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

from .. import proto
from ..client import KvtierClient, address
from ..errors import KvtierError
from ..framing import NO_BLOCK
from ..session import Session, release_lease
from .metadata import KVTierConnectorMetadata, LoadSpec, SaveSpec
from .settings import Settings, rank_index
from .stats import KVTierConnectorStats

log = logging.getLogger("kvtier.vllm")


@dataclass
class _Lookup:
    hit_chunks: int
    usable_tokens: int
    leases: dict[int, int]
    local_tokens: int = 0


def block_group0(block_ids: Any) -> list[int]:
    """The first KV cache group's block ids, from vLLM's list or tuple-of-lists forms."""
    if block_ids is None:
        return []
    if len(block_ids) and isinstance(block_ids[0], (list, tuple)):
        return list(block_ids[0])
    return list(block_ids)


class SchedulerSide:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        fp = settings.fingerprint
        session = Session(settings.socket, settings.timeout_s, settings.retry_interval_s, log)
        self.clients: dict[int, KvtierClient] = {}
        for pp in range(fp.pp_size):
            for tp in range(fp.tp_size):
                self.clients[rank_index(fp, tp, pp)] = session.client(fp.replace(tp_rank=tp, pp_rank=pp),
                                                                      "vllm-scheduler")
        self.health = session.health
        self._lookups: dict[str, _Lookup] = {}
        self._to_load: list[LoadSpec] = []
        self._loading: set[str] = set()            # LoadSpec sent, finished_recving not seen
        self._load_failed: set[str] = set()        # a load failed: never offered again
        self._saves: list[SaveSpec] = []
        self._loaded_chunks: dict[str, int] = {}
        self._load_blocks: dict[str, tuple[int, list[int]]] = {}   # req -> (first chunk, block ids) loaded
        self.interval = KVTierConnectorStats()     # taken by get_kv_connector_stats
        self._bypass_counted: set[str] = set()     # a request is counted once, not per lookup

    # -- vLLM hooks -----------------------------------------------------------

    def get_num_new_matched_tokens(self, request: Any, num_computed_tokens: int) -> tuple[int, bool]:
        req_id = request.request_id
        self._release(self._lookups.pop(req_id, None))
        if _bypass(request):
            if req_id not in self._bypass_counted:
                self._bypass_counted.add(req_id)
                self.interval.add("bypassed")
            return 0, False
        if (not self.s.load or req_id in self._loading or req_id in self._load_failed
                or not self.health.ready()):
            return 0, False
        tokens = list(request.prompt_token_ids or [])
        if len(tokens) <= self.s.chunk_size:
            return 0, False
        leases: dict[int, int] = {}
        try:
            body = proto.Lookup(address=address(tokens, None), lease_ttl_ms=self.s.lease_ttl_ms)
            pending = {idx: c.submit(body) for idx, c in self.clients.items()}  # one round trip for all ranks
            hit_tokens, hit_chunks = len(tokens), None
            tiers = (0, 0)
            for idx, p in pending.items():
                _, ok = p.wait(self.s.lookup_timeout_s)[0]
                tiers = (ok.host_chunks, ok.valkey_chunks) if idx == 0 else tiers
                if ok.lease_id:
                    leases[idx] = ok.lease_id
                hit_tokens = min(hit_tokens, ok.hit_tokens)
                hit_chunks = ok.hit_chunks if hit_chunks is None else min(hit_chunks, ok.hit_chunks)
            self.health.ok()
        except KvtierError as exc:
            self.health.failed(exc)
            self._release(_Lookup(0, 0, leases))
            return 0, False
        usable = min(hit_tokens, (hit_chunks or 0) * self.s.chunk_size, len(tokens) - 1)
        if usable <= num_computed_tokens or len(leases) != len(self.clients):
            self._release(_Lookup(0, 0, leases))
            return 0, False
        self._lookups[req_id] = _Lookup(hit_chunks or 0, usable, leases, num_computed_tokens)
        self.interval.add("lookups")
        self.interval.add("hit_tokens", usable - num_computed_tokens)
        self.interval.add("hit_chunks_host", tiers[0])
        self.interval.add("hit_chunks_valkey", tiers[1])
        return usable - num_computed_tokens, True

    def update_state_after_alloc(self, request: Any, blocks: Any, num_external_tokens: int) -> None:
        """Decides from num_external_tokens alone (base.py): blocks may be non-empty when it is 0,
        and an async request gets a second call with 0 once its load is done."""
        req_id = request.request_id
        lk = self._lookups.pop(req_id, None)
        if lk is None or num_external_tokens <= 0:
            self._release(lk)
            return
        lk.local_tokens = lk.usable_tokens - num_external_tokens
        self._add_load(req_id, lk, block_group0(_block_ids(blocks)))

    def build_connector_meta(self, scheduler_output: Any) -> KVTierConnectorMetadata:
        meta = KVTierConnectorMetadata()
        meta.loads, self._to_load = self._to_load, []
        self._loading.update(ld.req_id for ld in meta.loads)
        for lk in self._lookups.values():  # looked up, not allocated: the next call looks up again
            self._release(lk)
        self._lookups.clear()
        meta.saves, self._saves = self._saves, []
        preempted = set(getattr(scheduler_output, "preempted_req_ids", None) or ())
        meta.preempted = preempted
        for req_id in preempted:
            # Its blocks are freed and it is recomputed from scratch: the blocks of its load are
            # no longer its blocks (chunks known cached stay known, so its save still skips them).
            self._load_blocks.pop(req_id, None)
        return meta

    def update_connector_output(self, connector_output: Any) -> None:
        """Blocks whose load failed (KVConnectorOutput.invalid_block_ids): vLLM recomputes them,
        and request_finished must then save those chunks again instead of skipping them as
        already cached (a chunk that failed verification was dropped by the daemon)."""
        invalid = set(getattr(connector_output, "invalid_block_ids", None) or ())
        B = self.s.blocks_per_chunk
        for req_id, (first, ids) in list(self._load_blocks.items()) if invalid else ():
            bad = [j for j, b in enumerate(ids) if b != NO_BLOCK and b in invalid]
            if bad:
                self._loaded_chunks[req_id] = min(self._loaded_chunks.get(req_id, 0), first + bad[0] // B)
                self._load_failed.add(req_id)
        self._loading.difference_update(getattr(connector_output, "finished_recving", None) or ())

    def request_finished(self, request: Any, block_ids: Any) -> tuple[bool, Optional[dict[str, Any]]]:
        req_id = request.request_id
        self._release(self._lookups.pop(req_id, None))
        loaded = self._loaded_chunks.pop(req_id, 0)
        self._load_blocks.pop(req_id, None)
        self._load_failed.discard(req_id)
        self._bypass_counted.discard(req_id)
        if req_id in self._loading:   # aborted while loading: nothing computed to save
            self._loading.discard(req_id)
            self._to_load = [ld for ld in self._to_load if ld.req_id != req_id]
            return False, None
        if not self.s.save or not self.health.ready() or _bypass(request):
            return False, None
        blocks = block_group0(block_ids)
        tokens = list(getattr(request, "all_token_ids", None) or request.prompt_token_ids or [])
        computed = min(int(getattr(request, "num_computed_tokens", len(tokens))), len(tokens))
        publishable = getattr(request, "num_publishable_block_hashes", None)
        if publishable is not None:
            # vLLM: blocks past this (e.g. KV of speculative tokens not yet materialized) must
            # not be published by hash; kvtier's chunks are content-addressed the same way.
            computed = min(computed, int(publishable) * self.s.block_size)
        n_chunks = min(computed // self.s.chunk_size, len(blocks) // self.s.blocks_per_chunk)
        if n_chunks <= 0 or n_chunks <= loaded:
            return False, None
        B = self.s.blocks_per_chunk
        self._saves.append(SaveSpec(req_id, tokens[:n_chunks * self.s.chunk_size], blocks[:n_chunks * B],
                                    skip_chunks=loaded))
        return True, None

    def take_stats(self) -> Optional[KVTierConnectorStats]:
        if self.interval.is_empty():
            return None
        return self.interval.clone_and_reset()

    def shutdown(self) -> None:
        for lk in self._lookups.values():
            self._release(lk)
        for c in self.clients.values():
            c.close()

    # -- helpers --------------------------------------------------------------

    def _add_load(self, req_id: str, lk: _Lookup, table: list[int]) -> None:
        cs, bs, B = self.s.chunk_size, self.s.block_size, self.s.blocks_per_chunk
        first = lk.local_tokens // cs
        num = lk.hit_chunks - first
        if num <= 0:
            self._release(lk)
            return
        local_blocks = lk.local_tokens // bs
        ids: list[int] = []
        for b in range(first * B, (first + num) * B):
            ids.append(NO_BLOCK if b < local_blocks or b >= len(table) else table[b])
        self._to_load.append(LoadSpec(req_id, dict(lk.leases), first, num, ids))
        self._loaded_chunks[req_id] = lk.hit_chunks
        self._load_blocks[req_id] = (first, ids)

    def _release(self, lk: Optional[_Lookup]) -> None:
        if lk is None:
            return
        for idx, lease in lk.leases.items():
            release_lease(self.clients.get(idx), lease)


def _bypass(request: Any) -> bool:
    """Requests whose KV is not a function of their token ids alone bypass kvtier:
    a per-request cache_salt (the namespace has one salt per connector, sharing
    would cross tenants), multimodal inputs (placeholder tokens stand for
    different images), LoRA adapters, and prompt embeddings."""
    return bool(getattr(request, "cache_salt", None) or getattr(request, "mm_features", None)
                or getattr(request, "lora_request", None) is not None
                or getattr(request, "prompt_embeds", None) is not None)



def _block_ids(blocks: Any) -> Any:
    """Block ids of vLLM's KVCacheBlocks (get_block_ids()), or a plain list/tuple form."""
    get = getattr(blocks, "get_block_ids", None)
    return get() if get is not None else blocks
