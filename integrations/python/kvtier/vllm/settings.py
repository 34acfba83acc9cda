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
kvtier_lookup_timeout_s   0.5                  Lookup timeout: the scheduler never waits longer
kvtier_retry_interval_s   1.0                  back-off after the daemon was unreachable
kvtier_kv_layout          from the model       layout descriptor (kv-NHD-x2, mla-NC-x1, ...)
kvtier_model              model_config.model   namespace model name
kvtier_cache_salt         ""                   tenant salt: different salts never share
kvtier_tp_rank/pp_rank    from vLLM            rank override (stand-ins, tests)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

from ..hashing import Fingerprint
from ..layout import default_descriptor


@dataclass
class Settings:
    socket: str
    chunk_size: int
    block_size: int
    lease_ttl_ms: int
    timeout_s: float
    lookup_timeout_s: float
    retry_interval_s: float
    load: bool
    save: bool
    fingerprint: Fingerprint          # tp_rank/pp_rank filled per connection
    tp_rank: Optional[int]
    pp_rank: Optional[int]
    num_blocks: Optional[int]

    @property
    def blocks_per_chunk(self) -> int:
        return self.chunk_size // self.block_size


def _dtype_name(model_config: Any, cache_config: Any) -> str:
    cache_dtype = str(getattr(cache_config, "cache_dtype", "auto") or "auto")
    if cache_dtype != "auto":
        return cache_dtype
    return str(getattr(model_config, "dtype", "auto")).replace("torch.", "")


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
    role = str(getattr(ktc, "kv_role", "kv_both") or "kv_both")
    fp = Fingerprint(
        model=str(extra.get("kvtier_model", model_config.model)),
        dtype=_dtype_name(model_config, cache_config),
        kv_layout=str(extra.get("kvtier_kv_layout", default_descriptor(mla))),
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
        retry_interval_s=float(extra.get("kvtier_retry_interval_s", 1.0)),
        load=role in ("kv_both", "kv_consumer"), save=role in ("kv_both", "kv_producer"),
        fingerprint=fp, tp_rank=rank("kvtier_tp_rank"), pp_rank=rank("kvtier_pp_rank"),
        num_blocks=int(num_blocks) if num_blocks else None)


def worker_ranks(settings: Settings) -> tuple[int, int]:
    """(tp_rank, pp_rank) of this worker: overrides first, then vLLM's groups."""
    tp, pp = settings.tp_rank, settings.pp_rank
    if tp is None or pp is None:
        try:  # pragma: no cover - needs an initialized vLLM distributed env
            from vllm.distributed.parallel_state import get_pp_group, get_tensor_model_parallel_rank

            tp = get_tensor_model_parallel_rank() if tp is None else tp
            pp = get_pp_group().rank_in_group if pp is None else pp
        except Exception:
            tp, pp = tp or 0, pp or 0
    return int(tp), int(pp)


def rank_index(fp: Fingerprint, tp_rank: int, pp_rank: int) -> int:
    """Key of a rank's lease in the connector metadata."""
    return pp_rank * fp.tp_size + tp_rank
