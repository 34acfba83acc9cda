"""What the scheduler-side connector tells workers each step (picklable).

LoadSpec: chunks a Lookup leased, to scatter into this step's block table
(NO_BLOCK where vLLM already holds the block from its own prefix cache).
SaveSpec: a finished request whose full chunks workers store from their
blocks; vLLM keeps the blocks until get_finished reports the request.
With several KV cache groups there is one spec per group (`group`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .compat import MetadataBase


@dataclass
class LoadSpec:
    req_id: str
    leases: dict[int, int]            # rank_index -> lease id (one namespace per rank)
    first_chunk: int
    num_chunks: int
    block_ids: list[int]              # num_chunks * blocks_per_chunk entries
    group: int = 0                    # KV cache group (its own namespace); first_chunk is
                                      # relative to its lease (a sliding window's starts late)


@dataclass
class SaveSpec:
    req_id: str
    token_ids: list[int]              # full chunks only (token-addressed groups)
    block_ids: list[int]              # blocks_per_chunk per chunk
    skip_chunks: int                  # leading chunks known to be cached
    group: int = 0                    # KV cache group
    keys: Optional[list[bytes]] = None   # key-addressed chunks instead of token_ids (sliding window)
    seed: bytes = b""                 # the request's chain seed (extra keys), kvtier.vllm.keys
    step: bool = False                # stored during the steps (sliding window): after this step's
                                      # forward, copied before the next; not a request_finished hold


@dataclass
class KVTierConnectorMetadata(MetadataBase):
    loads: list[LoadSpec] = field(default_factory=list)
    saves: list[SaveSpec] = field(default_factory=list)
    # SchedulerOutput.preempted_req_ids of this step, for handle_preemptions(metadata)
    preempted: set[str] = field(default_factory=set)
