"""vLLM's connector base classes when vLLM is installed, stand-ins otherwise.

The package must import (and the connector be constructible in tests) without
vLLM. With vLLM, KVTierConnector subclasses the real KVConnectorBase_V1 (and
SupportsHMA) and its metadata the real KVConnectorMetadata, so vLLM's
isinstance checks pass.

Only vLLM being absent (ModuleNotFoundError for the top-level `vllm`) selects
the stand-ins. Any other import failure (a broken install, a missing CUDA
library, a vLLM whose base.py moved) is raised: silently running the
stand-ins inside a real vLLM would make its factory refuse the connector, or
worse, accept one that is not the class it checks.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Optional

def vllm_absent(exc: BaseException) -> bool:
    """True when `exc` says the vllm package itself is not installed (nothing else)."""
    return isinstance(exc, ModuleNotFoundError) and exc.name == "vllm"


try:  # pragma: no cover - exercised only where vLLM is installed
    import vllm as _vllm  # noqa: F401
except ModuleNotFoundError as _exc:
    if not vllm_absent(_exc):
        raise
    HAVE_VLLM = False
else:  # pragma: no cover - vLLM installed: its base classes must import, or this raises
    HAVE_VLLM = True

if HAVE_VLLM:  # pragma: no cover
    from vllm.distributed.kv_transfer.kv_connector.v1.base import (  # type: ignore
        KVConnectorBase_V1 as ConnectorBase,
        KVConnectorMetadata as MetadataBase,
        KVConnectorRole as Role,
    )
    try:
        from vllm.distributed.kv_transfer.kv_connector.v1.base import SupportsHMA  # type: ignore
    except ImportError:  # vLLM before the hybrid memory allocator had connector support
        class SupportsHMA:  # type: ignore[no-redef]
            """Stand-in marker: this vLLM has no SupportsHMA to check."""
    try:
        from vllm.distributed.kv_transfer.kv_connector.v1.metrics import (  # type: ignore
            KVConnectorStats as StatsBase,
        )
    except ImportError:  # vLLM before connector stats
        StatsBase = None  # type: ignore[assignment,misc]
    try:
        from vllm.distributed.kv_transfer.kv_connector.v1.metrics import (  # type: ignore
            KVConnectorPromMetrics as PromMetricsBase,
        )
    except ImportError:  # vLLM before per-connector Prometheus metrics
        PromMetricsBase = None  # type: ignore[assignment,misc]
else:

    class Role(enum.Enum):  # type: ignore[no-redef]
        SCHEDULER = 0
        WORKER = 1

    class MetadataBase:  # type: ignore[no-redef]
        """Stand-in for vllm KVConnectorMetadata."""

    class ConnectorBase:  # type: ignore[no-redef]
        """Stand-in for KVConnectorBase_V1: metadata binding, as vLLM's model runner uses it."""

        def __init__(self, vllm_config: Any, role: Any, kv_cache_config: Any = None) -> None:
            self._connector_metadata: Optional[Any] = None
            self._vllm_config = vllm_config
            self._kv_transfer_config = getattr(vllm_config, "kv_transfer_config", None)
            self._kv_cache_config = kv_cache_config
            self._role = role

        @property
        def role(self) -> Any:
            return self._role

        def bind_connector_metadata(self, connector_metadata: Any) -> None:
            self._connector_metadata = connector_metadata

        def clear_connector_metadata(self) -> None:
            self._connector_metadata = None

        def _get_connector_metadata(self) -> Any:
            assert self._connector_metadata is not None
            return self._connector_metadata

        def has_connector_metadata(self) -> bool:
            return self._connector_metadata is not None

    class SupportsHMA:  # type: ignore[no-redef]
        """Stand-in for vLLM's SupportsHMA marker (request_finished_all_groups)."""

    @dataclass
    class StatsBase:  # type: ignore[no-redef]
        """Stand-in for vLLM's KVConnectorStats: a `data` dict the subclass aggregates."""

        data: dict = field(default_factory=dict)

    class PromMetricsBase:  # type: ignore[no-redef]
        """Stand-in for vLLM's KVConnectorPromMetrics: what its __init__ keeps. vLLM keys
        metric_types by prometheus_client's Gauge, Counter and Histogram classes (the values
        are the classes to instantiate: prometheus_client's own, or Ray's wrappers)."""

        def __init__(self, vllm_config: Any, metric_types: dict, labelnames: list,
                     per_engine_labelvalues: dict) -> None:
            by_name = {t.__name__: cls for t, cls in metric_types.items()}
            self._kv_transfer_config = getattr(vllm_config, "kv_transfer_config", None)
            self._gauge_cls = by_name["Gauge"]
            self._counter_cls = by_name["Counter"]
            self._histogram_cls = by_name["Histogram"]
            self._labelnames = labelnames
            self.per_engine_labelvalues = per_engine_labelvalues


def init_base(obj: Any, vllm_config: Any, role: Any, kv_cache_config: Any) -> None:
    """Calls the base __init__ with whichever signature this vLLM has."""
    try:
        ConnectorBase.__init__(obj, vllm_config=vllm_config, role=role, kv_cache_config=kv_cache_config)
    except TypeError:  # vLLM before kv_cache_config was passed to connectors
        ConnectorBase.__init__(obj, vllm_config=vllm_config, role=role)


def is_scheduler(role: Any) -> bool:
    return getattr(role, "name", str(role)).upper().endswith("SCHEDULER")
