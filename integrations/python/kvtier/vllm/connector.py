"""KVTierConnector: vLLM V1 KV connector backed by kvtierd.

Load it with
  --kv-transfer-config '{"kv_connector":"KVTierConnector","kv_connector_module_path":"kvtier.vllm",
                         "kv_role":"kv_both","kv_connector_extra_config":{"kvtier_socket":"/tmp/kvtier.sock"}}'

vLLM builds one instance with role SCHEDULER in the engine core and one with
role WORKER per GPU worker; each delegates to SchedulerSide or WorkerSide.
The methods of the other role are never called by vLLM and are inert here.
"""
from __future__ import annotations

from typing import Any, Optional

from .compat import ConnectorBase, PromMetricsBase, SupportsHMA, init_base, is_scheduler
from .metadata import KVTierConnectorMetadata
from .scheduler import SchedulerSide
from .settings import settings_from_vllm
from .stats import KVTierConnectorStats
from .worker import GroupedWorker, WorkerSide


class KVTierConnector(ConnectorBase, SupportsHMA):  # type: ignore[misc, valid-type]
    def __init__(self, vllm_config: Any, role: Any, kv_cache_config: Any = None) -> None:
        init_base(self, vllm_config, role, kv_cache_config)
        self.settings = settings_from_vllm(vllm_config, kv_cache_config)
        self._scheduler: Optional[SchedulerSide] = None
        self._worker: Any = None       # WorkerSide, or GroupedWorker with several KV cache groups
        if is_scheduler(role):
            self._scheduler = SchedulerSide(self.settings)
        elif len(self.settings.groups) > 1:
            self._worker = GroupedWorker(self.settings)
        else:
            self._worker = WorkerSide(self.settings)

    # -- properties vLLM reads (base.py defaults overridden) -------------------------

    @property
    def requires_kv_delivery(self) -> bool:
        """False: kvtier is a best-effort cache, a dropped save is a later miss. The base
        default (is_kv_producer) is True for kv_both, which makes vLLM recompute a preempted
        request whose hand-off is pending and can stall async scheduling for nothing: kvtier
        saves only finished requests, from blocks vLLM holds until get_finished reports them."""
        return False

    @property
    def prefer_cross_layer_blocks(self) -> bool:
        """kvtier_cross_layer_blocks: vLLM then allocates blocks contiguous across all layers
        when the model's layers are uniform and the backend has a stride order for it, and calls
        register_cross_layers_kv_cache instead of register_kv_caches. Off by default because the
        scheduler must know the chunk layout before the workers register (the namespace names
        it), and with several KV cache groups (hybrid models) vLLM cannot use it."""
        return bool(self.settings.cross_layer_blocks) and len(self.settings.groups) <= 1

    # -- scheduler side -----------------------------------------------------------

    def get_num_new_matched_tokens(self, request: Any, num_computed_tokens: int) -> tuple[int, bool]:
        assert self._scheduler is not None
        return self._scheduler.get_num_new_matched_tokens(request, num_computed_tokens)

    def update_state_after_alloc(self, request: Any, blocks: Any, num_external_tokens: int) -> None:
        assert self._scheduler is not None
        self._scheduler.update_state_after_alloc(request, blocks, num_external_tokens)

    def build_connector_meta(self, scheduler_output: Any) -> KVTierConnectorMetadata:
        assert self._scheduler is not None
        return self._scheduler.build_connector_meta(scheduler_output)

    def update_connector_output(self, connector_output: Any) -> None:
        if self._scheduler is not None:
            self._scheduler.update_connector_output(connector_output)

    def request_finished(self, request: Any, block_ids: Any) -> tuple[bool, Optional[dict[str, Any]]]:
        assert self._scheduler is not None
        return self._scheduler.request_finished(request, block_ids)

    def request_finished_all_groups(self, request: Any,
                                    block_ids: tuple[list[int], ...]) -> tuple[bool, Optional[dict[str, Any]]]:
        """SupportsHMA: vLLM's hybrid allocator calls this instead of request_finished, with
        every KV cache group's blocks."""
        assert self._scheduler is not None
        return self._scheduler.request_finished_all_groups(request, block_ids)

    # -- worker side -----------------------------------------------------------------

    def register_kv_caches(self, kv_caches: dict[str, Any]) -> None:
        assert self._worker is not None
        self._worker.register_kv_caches(kv_caches)

    def handle_preemptions(self, kv_connector_metadata: Any = None) -> None:
        """Called before preempted requests' blocks are overwritten. Current vLLM passes this
        step's connector metadata (its `preempted` ids come from SchedulerOutput.preempted_req_ids);
        older vLLM passed the set of preempted request ids itself."""
        if self._worker is None:
            return
        if isinstance(kv_connector_metadata, KVTierConnectorMetadata):
            ids = set(kv_connector_metadata.preempted)
        elif isinstance(kv_connector_metadata, (set, frozenset, list, tuple)):
            ids = set(kv_connector_metadata)
        else:
            ids = set()
        if ids:
            self._worker.handle_preemptions(ids)

    def register_cross_layers_kv_cache(self, kv_cache: Any, attn_backend: Any = None) -> None:
        assert self._worker is not None and isinstance(self._worker, WorkerSide)
        self._worker.register_cross_layers_kv_cache(kv_cache, attn_backend)

    def start_load_kv(self, forward_context: Any, **kwargs: Any) -> None:
        assert self._worker is not None
        meta = self._connector_metadata if self.has_connector_metadata() else None
        self._worker.start_load_kv(meta)

    def wait_for_layer_load(self, layer_name: str) -> None:
        if self._worker is not None:
            self._worker.wait_for_layer_load(layer_name)

    def save_kv_layer(self, layer_name: str, kv_layer: Any, attn_metadata: Any, **kwargs: Any) -> None:
        """Nothing to do per layer: finished requests are stored from their blocks."""

    def wait_for_save(self) -> None:
        """Never waits: finished requests' stores are reported by get_finished; the saves made
        during the steps (sliding-window chunks) go out here, after the forward wrote them."""
        if self._worker is not None:
            self._worker.wait_for_save()

    def get_finished(self, finished_req_ids: set[str]) -> tuple[Optional[set[str]], Optional[set[str]]]:
        if self._worker is None:
            return None, None
        return self._worker.get_finished(finished_req_ids)

    def get_block_ids_with_load_errors(self) -> set[int]:
        return self._worker.get_block_ids_with_load_errors() if self._worker is not None else set()

    # -- stats (vLLM's KVConnectorStats path) ---------------------------------------------

    def get_kv_connector_stats(self) -> Optional[KVTierConnectorStats]:
        """This interval's figures of this side (scheduler: lookups and hits; worker: loads and
        saves), or None when there is nothing to report."""
        side = self._worker if self._worker is not None else self._scheduler
        return side.take_stats() if side is not None else None

    @classmethod
    def build_kv_connector_stats(cls, data: Optional[dict[str, Any]] = None) -> KVTierConnectorStats:
        """vLLM rebuilds a dynamically loaded connector's stats from their data dict."""
        return KVTierConnectorStats(data=dict(data)) if data else KVTierConnectorStats()

    @classmethod
    def build_prom_metrics(cls, vllm_config: Any, metric_types: dict[Any, Any], labelnames: list[str],
                           per_engine_labelvalues: dict[int, list[object]]) -> Any:
        """vLLM's Prometheus logger asks once, at start, for the object its observe() feeds each
        step's connector stats to (kvtier.vllm.prom). None on a vLLM without per-connector
        Prometheus metrics (its base then has nothing to subclass)."""
        if PromMetricsBase is None:
            return None
        from .prom import KVTierPromMetrics

        return KVTierPromMetrics(vllm_config, metric_types, labelnames, per_engine_labelvalues)

    def shutdown(self) -> None:
        if self._worker is not None:
            self._worker.shutdown()
        if self._scheduler is not None:
            self._scheduler.shutdown()
