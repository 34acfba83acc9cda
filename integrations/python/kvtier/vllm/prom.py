"""kvtier's connector figures in vLLM's Prometheus output (build_prom_metrics).

vLLM's PrometheusStatLogger asks the connector class once, at start, for a
KVConnectorPromMetrics (`build_prom_metrics(vllm_config, metric_types,
labelnames, per_engine_labelvalues)`), and after every engine step hands it
the step's connector stats as a plain data dict (`observe(data, engine_idx)`:
every worker's KVTierConnectorStats aggregated, plus the scheduler's). The
dict holds this step's increments, so counters are incremented by them and
every load/save duration is one histogram sample.

Metrics are created through metric_types (prometheus_client's classes, or
Ray's wrappers when vLLM runs under Ray) with vLLM's label names, plus `tier`
or `reason` where a figure is split; names carry vLLM's `vllm:` prefix, and
prometheus_client adds `_total` to counters:

  vllm:kvtier_lookups_total                  Lookups the scheduler made
  vllm:kvtier_hit_tokens_total               prompt tokens claimed from kvtier
  vllm:kvtier_hit_chunks_total{tier}         claimed chunks by tier (host, disk, valkey)
  vllm:kvtier_bypassed_requests_total{reason}  requests kvtier could not key
  vllm:kvtier_loads_total, _loaded_chunks_total, _failed_load_blocks_total
  vllm:kvtier_saves_total, _stored_chunks_total, _failed_saves_total
  vllm:kvtier_load_time_seconds, vllm:kvtier_save_time_seconds   histograms
"""
from __future__ import annotations

from typing import Any

from .compat import PromMetricsBase
from .stats import DURATIONS

PREFIX = "vllm:kvtier_"

# data key -> (metric name without prefix, documentation)
COUNTERS = {
    "lookups": ("lookups", "Lookups kvtier's scheduler side made"),
    "hit_tokens": ("hit_tokens", "Prompt tokens vLLM was told to load from kvtier instead of computing"),
    "loads": ("loads", "Loads into vLLM's KV blocks that finished"),
    "loaded_chunks": ("loaded_chunks", "Chunks loaded into vLLM's KV blocks"),
    "failed_load_blocks": ("failed_load_blocks", "KV blocks whose load failed (recomputed by vLLM)"),
    "saves": ("saves", "Saves of finished requests that finished"),
    "stored_chunks": ("stored_chunks", "Chunks stored from vLLM's KV blocks"),
    "failed_saves": ("failed_saves", "Saves that failed (a later miss, never wrong KV)"),
}
# key prefix -> (metric name, documentation, extra label): one series per key suffix
SPLIT = {
    "hit_chunks_": ("hit_chunks", "Chunks claimed from kvtier, by the tier that held them", "tier"),
    "bypassed_": ("bypassed_requests", "Requests kvtier neither looked up nor saved, by reason", "reason"),
}
HISTOGRAMS = {
    DURATIONS["load"]: ("load_time_seconds", "Seconds from a load's request to its answer"),
    DURATIONS["save"]: ("save_time_seconds", "Seconds from a save's request to its answer"),
}
BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]


class KVTierPromMetrics(PromMetricsBase or object):  # type: ignore[misc]
    def __init__(self, vllm_config: Any, metric_types: dict, labelnames: list[str],
                 per_engine_labelvalues: dict[int, list[object]]) -> None:
        super().__init__(vllm_config, metric_types, labelnames, per_engine_labelvalues)
        names = list(labelnames)
        # Children per engine are made up front (vLLM's own metrics do the same), so a
        # series exists at 0 from the first scrape; split ones appear with their first value.
        self._counters = {k: self._per_engine(self._counter_cls(name=PREFIX + n, documentation=d, labelnames=names))
                          for k, (n, d) in COUNTERS.items()}
        self._split = {p: (self._counter_cls(name=PREFIX + n, documentation=d, labelnames=names + [label]))
                       for p, (n, d, label) in SPLIT.items()}
        self._histograms = {k: self._per_engine(self._histogram_cls(name=PREFIX + n, documentation=d,
                                                                    buckets=BUCKETS, labelnames=names))
                            for k, (n, d) in HISTOGRAMS.items()}

    def _per_engine(self, metric: Any) -> dict[int, Any]:
        return {idx: metric.labels(*values) for idx, values in self.per_engine_labelvalues.items()}

    def observe(self, transfer_stats_data: dict[str, Any], engine_idx: int = 0) -> None:
        """One step's connector stats (KVTierConnectorStats.data) of engine `engine_idx`."""
        values = self.per_engine_labelvalues[engine_idx]
        for key, v in transfer_stats_data.items():
            if isinstance(v, list):
                hist = self._histograms.get(key)
                if hist is not None:
                    for sample in v:
                        hist[engine_idx].observe(float(sample))
                continue
            if not isinstance(v, (int, float)) or v <= 0:
                continue
            if key in self._counters:
                self._counters[key][engine_idx].inc(v)
                continue
            for prefix, metric in self._split.items():
                if key.startswith(prefix) and len(key) > len(prefix):
                    metric.labels(*values, key[len(prefix):]).inc(v)
