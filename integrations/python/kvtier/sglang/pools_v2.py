"""HiCache's v2 multi-pool calls (hybrid models: Mamba/SWA/DSA side pools).

SGLang moves the KV pool through the v1/legacy calls and the extra pools of
hybrid models through batch_{exists,get,set}_v2 with PoolTransfer lists. A
side pool's page is stored under "<page hash>.<pool name>" (SGLang's own
component-key convention), KV pages under the bare hash. MLA ranks share
one namespace, but a side pool sharded by TP (Mamba states, SWA KV) differs
per rank: its keys then end in "@tp<rank>of<size>" (pools listed in
extra_config kvtier_replicated_pools, default the DSA indexer, do not). Exists for every
component goes in one request; longest-prefix and trailing-page policies
follow SGLang's HiCacheFile reference.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..errors import KvtierError

try:  # pragma: no cover - exercised only where SGLang is installed
    from sglang.srt.mem_cache.hicache_storage import PoolTransferResult  # type: ignore
except Exception:
    @dataclass
    class PoolTransferResult:  # type: ignore[no-redef]
        """Stand-in with SGLang's fields."""

        kv_hit_pages: int
        extra_pool_hit_pages: Dict[str, int] = field(default_factory=dict)

KV_NAMES = ("kv", "__default__")


def component_key(key: str, pool: Any) -> str:
    name = str(getattr(pool, "value", pool))
    return key if name in KV_NAMES else f"{key}.{name}"


def _name(pool: Any) -> str:
    return str(getattr(pool, "value", pool))


class PoolsV2Mixin:
    """Needs `_conn()`, `_get_many()`, `_put_many()`, `_failed()`, `_side_suffix()` and `registered_pools`."""

    def _component_key(self, key: str, pool: Any) -> str:
        k = component_key(key, pool)
        return k if k == key else k + self._side_suffix(_name(pool))  # type: ignore[attr-defined]

    def batch_exists_v2(self, keys: List[str], pool_transfers: Optional[List[Any]] = None,
                        extra_info: Optional[Any] = None) -> Any:
        transfers = list(pool_transfers or [])
        names = [_name(t.name) for t in transfers]
        wanted = [component_key(k, "kv") for k in keys] + [self._component_key(k, n) for n in names for k in keys]
        client = self._conn()  # type: ignore[attr-defined]
        if client is None or not keys:
            return PoolTransferResult(0, {})
        try:
            found = list(client.exists([w.encode() for w in wanted]).found)
        except KvtierError as exc:
            self._failed(exc)  # type: ignore[attr-defined]
            return PoolTransferResult(0, {})
        n = len(keys)
        kv = found[:n]
        kv_pages = kv.index(False) if False in kv else n
        hits: Dict[str, int] = {"kv": kv_pages} if kv_pages else {}
        final = kv_pages
        for j, t in enumerate(transfers):
            if final == 0:
                break
            have = found[n * (j + 1):n * (j + 2)]
            if _name(getattr(t, "hit_policy", "all_pages")) == "trailing_pages":
                trailing = max(1, len(t.keys) if t.keys else 1)
                boundary = next((p for p in range(kv_pages, 0, -1)
                                 if all(have[max(0, p - trailing):p])), 0)
            else:
                boundary = next((i for i in range(kv_pages) if not have[i]), kv_pages)
            if boundary:
                hits[names[j]] = boundary
            final = min(final, boundary)
        return PoolTransferResult(final, hits)

    def _transfer(self, t: Any) -> tuple[str, List[str], Any, int]:
        """A PoolTransfer's pool name, keys, registered pool (None: unusable) and page size."""
        name, keys = _name(t.name), list(t.keys or [])
        pool = getattr(self, "registered_pools", {}).get(name)
        if pool is None or t.host_indices is None:
            return name, keys, None, 1
        return name, keys, pool, int(getattr(pool, "page_size", 1) or 1)

    def batch_get_v2(self, transfers: List[Any], extra_info: Optional[Any] = None) -> Dict[str, List[bool]]:
        from .storage import _fill

        results: Dict[str, List[bool]] = {}
        for t in transfers:
            name, keys, pool, page = self._transfer(t)
            if pool is None:
                results[name] = [False] * len(keys)
                continue
            values = self._get_many([self._component_key(k, name) for k in keys])  # type: ignore[attr-defined]
            ok: List[bool] = []
            for i, data in enumerate(values):
                buf = pool.get_dummy_flat_data_page()
                if data is None or not _fill(buf, data):
                    ok.append(False)
                    continue
                pool.set_from_flat_data_page(int(t.host_indices[i * page].item()), buf)
                ok.append(True)
            results[name] = ok
        return results

    def batch_set_v2(self, transfers: List[Any], extra_info: Optional[Any] = None) -> Dict[str, List[bool]]:
        from .storage import _page_bytes

        results: Dict[str, List[bool]] = {}
        for t in transfers:
            name, keys, pool, page = self._transfer(t)
            if pool is None:
                results[name] = [False] * len(keys)
                continue
            pages = [_page_bytes(pool.get_data_page(int(t.host_indices[i * page].item()), flat=True))
                     for i in range(len(keys))]
            results[name] = self._put_many([self._component_key(k, name) for k in keys], pages)  # type: ignore[attr-defined]
        return results
