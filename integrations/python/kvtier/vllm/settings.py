"""Connector settings from vLLM's config: socket, chunking, namespace fields.

Read from kv_transfer_config.kv_connector_extra_config (keys below) and the
model/cache/parallel configs. Scheduler and workers build the namespace from
the same inputs so that a scheduler Lookup names the chunks workers stored;
the worker additionally checks the kv_layout it derives from its tensors.

extra config key          default              meaning
kvtier_socket             $KVTIER_SOCKET or /tmp/kvtier.sock
kvtier_chunk_size         256                  must equal the daemon's chunk_size
kvtier_lease_ttl_ms       30000                lease on looked-up chunks until loaded
kvtier_timeout_s          5.0                  per-request timeout (worker side): a load
                                               unanswered this long is failed
kvtier_lookup_timeout_s   0.5                  Lookup timeout: a request's Lookup unanswered this long
                                               (over every scheduler step it was polled in) is a miss
kvtier_lookup_wait_ms     5                    how long one scheduler step waits for a Lookup's answer;
                                               past it the request is asked about again next step
                                               (vLLM's (None, False)) and the batch goes on
kvtier_retry_interval_s   1.0                  back-off after the daemon was unreachable
kvtier_kv_layout          from the model       layout descriptor (kv-NHD-x2, mla-NC-x1, ...)
kvtier_model              model_config.model   namespace model name
kvtier_cache_salt         ""                   tenant salt: different salts never share
kvtier_cross_layer_blocks false               ask vLLM for cross-layer blocks (prefer_cross_layer_blocks):
                                               one contiguous block across all layers, one copy per
                                               block. Its chunks are another kv_layout (kv-xlLKNHD-x1),
                                               so engines share chunks only with the same choice
kvtier_mla_one_copy       true for MLA         MLA at TP>1: every rank holds the same latent KV, so
  (or LMCache's save_only_first_rank)          rank 0 saves and every rank loads that one copy (all
                                               ranks use rank 0's namespace); false: one copy per rank
kvtier_tp_rank/pp_rank    from vLLM            this worker's rank; without it the rank is read from
                                               vLLM's parallel state, and failing that is an error
                                               (RankUnknown) unless the size is 1
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from ..hashing import Fingerprint
from ..layout import default_descriptor


@dataclass(frozen=True)
class KvGroup:
    """One of vLLM's KV cache groups (kv_cache_config.kv_cache_groups[i]).

    kind: "full" (full attention, MLA included: every token's KV is read later),
    "sliding" (sliding-window attention: a later query reads only the last `window`
    tokens), or "unsupported" (mamba state, chunked-local attention, a spec kvtier
    does not know): a model with such a group is never looked up nor saved, so no
    prefix is ever half restored."""

    index: int
    kind: str
    window: int                     # sliding: tokens in the window; else 0
    layer_names: tuple[str, ...]
    spec_name: str


def kv_groups(kv_cache_config: Any) -> list[KvGroup]:
    """The KV cache groups of vLLM's KVCacheConfig; [] when it has none (older vLLM, tests)."""
    groups = getattr(kv_cache_config, "kv_cache_groups", None) if kv_cache_config is not None else None
    out: list[KvGroup] = []
    for i, g in enumerate(groups or ()):
        spec = getattr(g, "kv_cache_spec", None)
        name = type(spec).__name__
        window = int(getattr(spec, "sliding_window", None) or 0)
        if name == "SlidingWindowSpec" or (name.startswith("SlidingWindow") and window > 0):
            kind = "sliding"
        elif name in ("FullAttentionSpec", "MLAAttentionSpec"):
            # A FullAttentionSpec with sliding_window set (hybrid allocator off) keeps every block:
            # storing and loading all of them is right.
            kind, window = "full", 0
        else:
            kind, window = "unsupported", 0
        out.append(KvGroup(i, kind, window, tuple(getattr(g, "layer_names", ()) or ()), name))
    return out


def group_fingerprint(fp: Fingerprint, group: Optional[KvGroup], num_groups: int) -> Fingerprint:
    """The namespace of one group's chunks. With one group it is the connector's namespace
    unchanged (chunks stay shared with engines of before groups); with several, each group's
    layers are chunks of their own (another set of layers, another size), so the group, its
    kind and window go into kv_layout."""
    if group is None or num_groups <= 1:
        return fp
    tag = f"{group.kind}{group.window}" if group.window else group.kind
    return fp.replace(kv_layout=f"{fp.kv_layout};hma-g{group.index}of{num_groups}-{tag}")


@dataclass
class Settings:
    socket: str
    chunk_size: int
    block_size: int
    lease_ttl_ms: int
    timeout_s: float
    lookup_timeout_s: float
    lookup_wait_s: float
    retry_interval_s: float
    load: bool
    save: bool
    fingerprint: Fingerprint          # tp_rank/pp_rank filled per connection
    tp_rank: Optional[int]
    pp_rank: Optional[int]
    num_blocks: Optional[int]
    groups: list[KvGroup] = field(default_factory=list)
    cross_layer_blocks: bool = False
    mla_one_copy: bool = False        # MLA at TP>1: rank 0 saves, all ranks load rank 0's copy

    def namespace_tp_rank(self, tp_rank: int) -> int:
        """The tp_rank whose namespace a rank's chunks live in."""
        return 0 if self.mla_one_copy else tp_rank

    @property
    def unsupported_groups(self) -> list[KvGroup]:
        return [g for g in self.groups if g.kind == "unsupported"]

    @property
    def blocks_per_chunk(self) -> int:
        return self.chunk_size // self.block_size


def _dtype_name(model_config: Any, cache_config: Any) -> str:
    cache_dtype = str(getattr(cache_config, "cache_dtype", "auto") or "auto")
    if cache_dtype != "auto":
        return cache_dtype
    return str(getattr(model_config, "dtype", "auto")).replace("torch.", "")


def _flag(v: Any) -> bool:
    return v if isinstance(v, bool) else str(v).strip().lower() in ("1", "true", "yes", "on")


def settings_from_vllm(vllm_config: Any, kv_cache_config: Any = None) -> Settings:
    ktc = vllm_config.kv_transfer_config
    extra = dict(getattr(ktc, "kv_connector_extra_config", None) or {})
    model_config = vllm_config.model_config
    cache_config = vllm_config.cache_config
    parallel = vllm_config.parallel_config
    chunk_size = int(extra.get("kvtier_chunk_size", 256))
    block_size = int(cache_config.block_size)
    if chunk_size % block_size:
        raise ValueError(f"kvtier_chunk_size {chunk_size} must be a multiple of the vLLM block_size "
                         f"{block_size}")
    mla = bool(getattr(model_config, "use_mla", False))
    cross_layer = _flag(extra.get("kvtier_cross_layer_blocks", False))
    one_copy = _flag(extra.get("kvtier_mla_one_copy", extra.get("save_only_first_rank", True)))
    role = str(getattr(ktc, "kv_role", "kv_both") or "kv_both")
    fp = Fingerprint(
        model=str(extra.get("kvtier_model", model_config.model)),
        dtype=_dtype_name(model_config, cache_config),
        kv_layout=str(extra.get("kvtier_kv_layout", default_descriptor(mla, cross_layer))),
        chunk_size=chunk_size, block_size=block_size,
        tp_size=int(getattr(parallel, "tensor_parallel_size", 1)),
        pp_size=int(getattr(parallel, "pipeline_parallel_size", 1)),
        mla=mla, cache_salt=str(extra.get("kvtier_cache_salt", "")))
    rank = lambda k: int(extra[k]) if k in extra else None  # noqa: E731
    num_blocks = getattr(kv_cache_config, "num_blocks", None) if kv_cache_config is not None else None
    return Settings(
        socket=str(extra.get("kvtier_socket", os.environ.get("KVTIER_SOCKET", "/tmp/kvtier.sock"))),
        chunk_size=chunk_size, block_size=block_size,
        lease_ttl_ms=int(extra.get("kvtier_lease_ttl_ms", 30000)),
        timeout_s=float(extra.get("kvtier_timeout_s", 5.0)),
        lookup_timeout_s=float(extra.get("kvtier_lookup_timeout_s", 0.5)),
        lookup_wait_s=float(extra.get("kvtier_lookup_wait_ms", 5)) / 1000,
        retry_interval_s=float(extra.get("kvtier_retry_interval_s", 1.0)),
        load=role in ("kv_both", "kv_consumer"), save=role in ("kv_both", "kv_producer"),
        fingerprint=fp, tp_rank=rank("kvtier_tp_rank"), pp_rank=rank("kvtier_pp_rank"),
        num_blocks=int(num_blocks) if num_blocks else None, groups=kv_groups(kv_cache_config),
        cross_layer_blocks=cross_layer, mla_one_copy=bool(mla and one_copy and fp.tp_size > 1))


class RankUnknown(RuntimeError):
    """This worker's tp/pp rank could not be read: storing under a guessed rank would put
    one rank's KV shard in another rank's namespace."""


def worker_ranks(settings: Settings) -> tuple[int, int]:
    """(tp_rank, pp_rank) of this worker: kvtier_tp_rank/kvtier_pp_rank first, then vLLM's
    parallel state. A dimension of size 1 has rank 0 (nothing to read). Otherwise a rank that
    cannot be read raises RankUnknown naming what is missing: falling back to rank 0 would let
    every shard land in rank 0's namespace and one rank load another rank's KV."""
    fp = settings.fingerprint
    tp, pp = settings.tp_rank, settings.pp_rank
    if tp is None and fp.tp_size == 1:
        tp = 0
    if pp is None and fp.pp_size == 1:
        pp = 0
    if tp is None or pp is None:
        try:
            from vllm.distributed.parallel_state import get_pp_group, get_tensor_model_parallel_rank
        except ImportError as exc:
            raise RankUnknown(
                f"kvtier: tensor_parallel_size={fp.tp_size}, pipeline_parallel_size={fp.pp_size} but "
                f"vllm.distributed.parallel_state cannot be imported ({exc}); set "
                "kv_connector_extra_config.kvtier_tp_rank / kvtier_pp_rank") from exc
        try:
            tp = get_tensor_model_parallel_rank() if tp is None else tp
            pp = get_pp_group().rank_in_group if pp is None else pp
        except Exception as exc:  # vLLM asserts when its groups are not initialized yet
            raise RankUnknown(
                f"kvtier: cannot read this worker's rank from vLLM's parallel state "
                f"(tensor_parallel_size={fp.tp_size}, pipeline_parallel_size={fp.pp_size}): "
                f"{type(exc).__name__}: {exc}; the TP/PP groups must be initialized before the "
                "worker connector, or set kv_connector_extra_config.kvtier_tp_rank / kvtier_pp_rank") from exc
    tp, pp = int(tp), int(pp)
    if not (0 <= tp < fp.tp_size and 0 <= pp < fp.pp_size):
        raise RankUnknown(f"kvtier: rank tp={tp} pp={pp} is outside tensor_parallel_size={fp.tp_size}, "
                          f"pipeline_parallel_size={fp.pp_size}")
    return tp, pp


def rank_index(fp: Fingerprint, tp_rank: int, pp_rank: int) -> int:
    """Key of a rank's lease in the connector metadata."""
    return pp_rank * fp.tp_size + tp_rank
