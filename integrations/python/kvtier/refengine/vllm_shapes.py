"""The vLLM V1 scheduler objects KVTierConnector reads, as plain dataclasses.

One definition for every instrument that drives the connector the way vLLM
does (the reference engine here, the stand-in engine of the connector tests),
so a field the connector starts to read is added in one place. Only the
fields the connector uses are modelled; names and meanings follow vLLM's
vllm/v1/core/sched/output.py and KVCacheBlocks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class NewRequestData:
    req_id: str
    prompt_token_ids: list[int]
    block_ids: tuple[list[int], ...]
    num_computed_tokens: int


@dataclass
class CachedRequestData:
    req_ids: list[str] = field(default_factory=list)
    resumed_req_ids: set[str] = field(default_factory=set)
    new_block_ids: list[Optional[tuple[list[int], ...]]] = field(default_factory=list)
    num_computed_tokens: list[int] = field(default_factory=list)


@dataclass
class SchedulerOutput:
    scheduled_new_reqs: list[NewRequestData]
    scheduled_cached_reqs: CachedRequestData
    num_scheduled_tokens: dict[str, int]
    finished_req_ids: set[str]
    total_num_scheduled_tokens: int = 0
    kv_connector_metadata: Any = None
    preempted_req_ids: Optional[set[str]] = None


class KVCacheBlocks:
    """What the scheduler hands update_state_after_alloc: the request's block ids per KV group."""

    def __init__(self, ids: list[int], *more_groups: list[int]) -> None:
        self._groups = [list(ids)] + [list(g) for g in more_groups]

    def get_block_ids(self) -> tuple[list[int], ...]:
        return tuple(list(g) for g in self._groups)


# KV cache specs and groups (vllm/v1/kv_cache_interface.py): the connector reads the class
# name, sliding_window and each group's layer_names.

@dataclass
class FullAttentionSpec:
    block_size: int


@dataclass
class SlidingWindowSpec:
    block_size: int
    sliding_window: int


@dataclass
class MambaSpec:
    block_size: int


@dataclass
class KVCacheGroupSpec:
    layer_names: list[str]
    kv_cache_spec: Any


@dataclass
class KVCacheConfig:
    num_blocks: int
    kv_cache_groups: list[KVCacheGroupSpec] = field(default_factory=list)
