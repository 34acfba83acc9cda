"""Connector figures through vLLM's own stats path.

vLLM asks each connector for `get_kv_connector_stats()` after a step (workers,
and the scheduler for its side) and merges the objects of all workers with
`aggregate`; the logger calls `reduce` once per interval. Classes registered
through kv_connector_module_path are rebuilt from their `data` dict by the
connector class's `build_kv_connector_stats(data)`, so everything lives in
`data` as plain numbers (picklable, msgspec-encodable).

Counters (sums over the interval and over workers):
  lookups, hit_tokens            scheduler: Lookups made, tokens claimed from kvtier
  hit_chunks_host, _disk, _valkey   scheduler: of the claimed chunks, per tier
  loads, loaded_chunks, failed_load_blocks, load_time_s   workers
  saves, stored_chunks, failed_saves, save_time_s          workers
  bypassed                       scheduler: requests neither looked up nor saved
  bypassed_<reason>              scheduler: the same, per reason (prompt_embeds, lora_unnamed, ...)
Lists (concatenated over workers), one entry per finished transfer, so that
vLLM's Prometheus path (prom.py) can fill histograms:
  load_durations_s, save_durations_s   workers: seconds from request to answer
The log line (`reduce`) shows the counters only.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Union

from .compat import StatsBase

COUNTERS = ("lookups", "hit_tokens", "hit_chunks_host", "hit_chunks_disk", "hit_chunks_valkey", "bypassed",
            "loads", "loaded_chunks", "failed_load_blocks", "load_time_s",
            "saves", "stored_chunks", "failed_saves", "save_time_s")
DURATIONS = {"load": "load_durations_s", "save": "save_durations_s"}


@dataclass
class KVTierConnectorStats(StatsBase):  # type: ignore[misc, valid-type]
    def __post_init__(self) -> None:
        if not self.data:
            self.reset()

    def reset(self) -> None:
        self.data = {k: 0 for k in COUNTERS}
        self.data.update({k: [] for k in DURATIONS.values()})

    def add(self, key: str, value: Union[int, float] = 1) -> None:
        self.data[key] = self.data.get(key, 0) + value

    def finished(self, kind: str, seconds: float) -> None:
        """One load or save answered after `seconds`: its count, its time, and the sample."""
        self.add(kind + "s")
        self.add(kind + "_time_s", seconds)
        self.data.setdefault(DURATIONS[kind], []).append(float(seconds))

    def aggregate(self, other: Any) -> "KVTierConnectorStats":
        for k, v in (getattr(other, "data", None) or {}).items():
            if isinstance(v, (int, float)):
                self.data[k] = self.data.get(k, 0) + v
            elif isinstance(v, list):
                self.data.setdefault(k, []).extend(v)
        return self

    def reduce(self) -> dict[str, Union[int, float]]:
        out = {k: v for k, v in self.data.items() if isinstance(v, (int, float))}
        for key in ("load_time_s", "save_time_s"):
            if key in out:
                out[key] = round(float(out[key]), 6)
        return out

    def is_empty(self) -> bool:
        return not any(self.data.get(k) for k in COUNTERS)

    def clone_and_reset(self) -> "KVTierConnectorStats":
        old = KVTierConnectorStats(data=copy.deepcopy(self.data))
        self.reset()
        return old
