"""KVTierHiCacheStorage: SGLang's HiCacheStorage over kvtierd Put/Get/Exists.

SGLang names each host page by its own prefix-chained page hash, so chunks are
addressed by those opaque keys (the daemon hashes them into its namespace:
SHA-256(h0 || 'k' || key)). Values are SGLang's flat host pages, copied inline
over the socket: the zero-copy v1 calls read/write pages of the registered
host pool, the legacy calls move tensors, the v2 calls handle the side pools
of hybrid models (pools_v2.py). Batches are pipelined (all requests
sent, then all answers awaited). Every failure is a miss or a failed write,
never an exception into SGLang's prefetch/backup threads.

The namespace: model, the host pool's dtype and layout, page size, tp/pp rank
(MLA ranks share one namespace: every rank holds the same latent KV), salt.
"""
from __future__ import annotations

import logging
from typing import Any, List, Optional

from ..client import KvtierClient, Pending
from ..errors import KvtierError
from ..hashing import Fingerprint
from ..health import Health
from .pools_v2 import PoolsV2Mixin

log = logging.getLogger("kvtier.sglang")

try:  # pragma: no cover - exercised only where SGLang is installed
    from sglang.srt.mem_cache.hicache_storage import HiCacheStorage as _Base  # type: ignore

    HAVE_SGLANG = True
except Exception:
    _Base = object
    HAVE_SGLANG = False


def _page_bytes(t: Any) -> bytes:
    import torch

    return t.detach().contiguous().view(torch.uint8).cpu().numpy().tobytes()


def _fill(target: Any, data: bytes) -> bool:
    """Copies `data` into the tensor `target` if the sizes match."""
    import torch

    flat = target.view(torch.uint8).reshape(-1) if target.is_contiguous() else None
    if flat is None or flat.numel() != len(data):
        return False
    flat.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    return True


class KVTierHiCacheStorage(PoolsV2Mixin, _Base):  # type: ignore[misc, valid-type]
    """HiCacheStorage backend. Constructed by SGLang's dynamic backend loader."""

    def __init__(self, storage_config: Any, *args: Any, **kwargs: Any) -> None:
        self.config = storage_config
        self.extra = dict(getattr(storage_config, "extra_config", None) or {})
        self.socket = str(self.extra.get("kvtier_socket", "/tmp/kvtier.sock"))
        self.timeout = float(self.extra.get("kvtier_timeout_s", 5.0))
        self.health = Health(f"kvtierd at {self.socket}", log,
                             float(self.extra.get("kvtier_retry_interval_s", 1.0)))
        self.mem_pool_host: Any = None
        self._client: Optional[KvtierClient] = None
        pool = kwargs.get("mem_pool_host") or next((a for a in args if hasattr(a, "page_size")), None)
        if pool is not None:
            self.register_mem_pool_host(pool)

    # -- namespace / connection ------------------------------------------------------

    def fingerprint(self) -> Fingerprint:
        c, pool, x = self.config, self.mem_pool_host, self.extra
        mla = bool(getattr(c, "is_mla_model", False))
        layout = getattr(pool, "layout", None) or ("page_first" if getattr(c, "is_page_first_layout", False)
                                                   else "layer_first")
        dtype = str(x.get("kvtier_dtype", getattr(pool, "dtype", "unknown"))).replace("torch.", "")
        return Fingerprint(
            model=str(x.get("kvtier_model", getattr(c, "model_name", None) or "")),
            dtype=dtype, kv_layout=f"sglang-{layout}",
            chunk_size=int(x.get("kvtier_chunk_size", 256)),
            block_size=int(getattr(pool, "page_size", x.get("kvtier_page_size", 64)) or 1),
            tp_rank=0 if mla else int(getattr(c, "tp_rank", 0)), tp_size=1 if mla else int(getattr(c, "tp_size", 1)),
            pp_rank=int(getattr(c, "pp_rank", 0)), pp_size=int(getattr(c, "pp_size", 1)),
            mla=mla, cache_salt=str(x.get("kvtier_cache_salt", "")))

    def register_mem_pool_host(self, mem_pool_host: Any) -> None:
        self.mem_pool_host = mem_pool_host
        if self._client is not None:  # the namespace depends on the pool: dial again
            self._client.close()
            self._client = None

    def register_mem_host_pool_v2(self, host_pool: Any, host_pool_name: Any) -> None:
        if not hasattr(self, "registered_pools"):
            self.registered_pools = {}
        self.registered_pools[str(host_pool_name)] = host_pool
        if str(host_pool_name) == "kv" and self.mem_pool_host is None:
            self.register_mem_pool_host(host_pool)

    def _conn(self) -> Optional[KvtierClient]:
        if not self.health.ready():
            return None
        if self._client is None:
            self._client = KvtierClient(self.socket, self.fingerprint(), "sglang", timeout=self.timeout,
                                        connect_timeout=min(self.timeout, 1.0))
        return self._client

    def _failed(self, exc: KvtierError) -> None:
        self.health.failed(exc)

    # -- legacy (non-zero-copy) API --------------------------------------------------

    def get(self, key: str, target_location: Optional[Any] = None, target_sizes: Optional[Any] = None) -> Any:
        return self.batch_get([key], [target_location] if target_location is not None else None)[0]

    def batch_get(self, keys: List[str], target_locations: Optional[Any] = None,
                  target_sizes: Optional[Any] = None) -> List[Any]:
        values = self._get_many(keys)
        out: List[Any] = []
        for i, data in enumerate(values):
            target = target_locations[i] if target_locations is not None else None
            if data is None:
                out.append(None)
            elif target is not None:
                out.append(target if _fill(target, data) else None)
            else:
                import torch

                out.append(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        return out

    def set(self, key: str, value: Optional[Any] = None, target_location: Optional[Any] = None,
            target_sizes: Optional[Any] = None) -> bool:
        return self.batch_set([key], [value])

    def batch_set(self, keys: List[str], values: Optional[Any] = None, target_locations: Optional[Any] = None,
                  target_sizes: Optional[Any] = None) -> bool:
        if values is None:
            return False
        return all(self._put_many(keys, [_page_bytes(v) for v in values]))

    def exists(self, key: str) -> bool:
        return self.batch_exists([key]) == 1

    def batch_exists(self, keys: List[str], extra_info: Optional[Any] = None) -> int:
        client = self._conn()
        if client is None or not keys:
            return 0
        try:
            ok = client.exists([k.encode() for k in keys])
            self.health.ok()
            return int(ok.prefix_found)
        except KvtierError as exc:
            self._failed(exc)
            return 0

    # -- zero-copy v1 API: pages of the registered host pool ---------------------------

    def _page_index(self, host_indices: Any, i: int) -> int:
        page = int(getattr(self.mem_pool_host, "page_size", 1) or 1)
        return int(host_indices[i * page].item())

    def batch_get_v1(self, keys: List[str], host_indices: Any, extra_info: Optional[Any] = None) -> List[bool]:
        pool = self.mem_pool_host
        values = self._get_many(keys)
        ok: List[bool] = []
        for i, data in enumerate(values):
            if data is None or not ok_all(ok):
                ok.append(False)
                continue
            page = pool.get_dummy_flat_data_page()
            if not _fill(page, data):
                ok.append(False)
                continue
            pool.set_from_flat_data_page(self._page_index(host_indices, i), page)
            ok.append(True)
        return ok

    def batch_set_v1(self, keys: List[str], host_indices: Any, extra_info: Optional[Any] = None) -> List[bool]:
        pool = self.mem_pool_host
        pages = [_page_bytes(pool.get_data_page(self._page_index(host_indices, i), flat=True))
                 for i in range(len(keys))]
        return self._put_many(keys, pages)

    def clear(self) -> None:
        client = self._conn()
        if client is None:
            return
        try:
            client.invalidate()
        except KvtierError as exc:
            self._failed(exc)

    def get_stats(self) -> Any:
        return None

    # -- pipelined helpers ---------------------------------------------------------------

    def _get_many(self, keys: List[str]) -> List[Optional[bytes]]:
        from .. import proto

        client = self._conn()
        if client is None:
            return [None] * len(keys)
        try:
            pend: List[Pending] = [client.submit(proto.Get(key=k.encode())) for k in keys]
            out: List[Optional[bytes]] = []
            for p in pend:
                _, msg = p.wait(self.timeout)[0]
                out.append(bytes(msg.value) if msg.found else None)
            self.health.ok()
            return out
        except KvtierError as exc:
            self._failed(exc)
            return [None] * len(keys)

    def _put_many(self, keys: List[str], values: List[bytes]) -> List[bool]:
        from .. import proto

        client = self._conn()
        if client is None:
            return [False] * len(keys)
        try:
            pend = [client.submit(proto.Put(key=k.encode(), value=v)) for k, v in zip(keys, values)]
        except KvtierError as exc:
            self._failed(exc)
            return [False] * len(keys)
        ok: List[bool] = []
        for p in pend:
            try:
                p.wait(self.timeout)
                ok.append(True)
            except KvtierError as exc:
                self._failed(exc)
                ok.append(False)
        return ok


def ok_all(flags: List[bool]) -> bool:
    """A page after a missing one is useless to SGLang (prefix semantics): stop at the first miss."""
    return all(flags)
