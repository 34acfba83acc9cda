"""KVTierHiCacheStorage: SGLang's HiCacheStorage over kvtierd.

SGLang names each host page by its own prefix-chained page hash, so chunks are
addressed by those opaque keys (the daemon hashes them into its namespace:
SHA-256(h0 || 'k' || key)), one key per chunk. The zero-copy v1 calls move
pages of the registered host pool in block form when the daemon can map
memory: pages are copied into an shm staging region registered once
(block_form.py) and the socket carries slot ids; otherwise, and for the
legacy calls, page bytes travel inline. The v2 calls handle the side pools of
hybrid models (pools_v2.py). Batches are pipelined. Every failure is a miss
or a failed write, never an exception into SGLang's prefetch/backup threads,
and every True is a page the daemon holds (Put answers PutOk, a block-form
Store's skipped pages are looked up).

The namespace: model, the host pool's dtype and layout, page size, tp/pp rank
(MLA ranks share one namespace: every rank holds the same latent KV), the
attention-CP rank (each CP rank holds its own slice of every page), salt.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, List, Optional

from .. import proto
from ..client import KvtierClient, Pending
from ..errors import ConfigError, DaemonUnavailable, KvtierError, RequestTimeout
from ..hashing import Fingerprint
from ..session import Session
from .block_form import PIECE_BYTES, BlockFormMixin, Staging, page_view
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


class KVTierHiCacheStorage(BlockFormMixin, PoolsV2Mixin, _Base):  # type: ignore[misc, valid-type]
    """HiCacheStorage backend. Constructed by SGLang's dynamic backend loader."""

    def __init__(self, storage_config: Any, *args: Any, **kwargs: Any) -> None:
        self.config = storage_config
        self.extra = dict(getattr(storage_config, "extra_config", None) or {})
        self.socket = str(self.extra.get("kvtier_socket", "/tmp/kvtier.sock"))
        self.timeout = float(self.extra.get("kvtier_timeout_s", 5.0))
        self.session = Session(self.socket, self.timeout, float(self.extra.get("kvtier_retry_interval_s", 1.0)), log)
        self.health = self.session.health
        self.mem_pool_host: Any = None
        self._client: Optional[KvtierClient] = None
        self._conn_lock = threading.Lock()
        self._staging: Optional[Staging] = None
        self._view: Any = None
        self._block_form = bool(self.extra.get("kvtier_block_form", True))
        self._registered = False
        self._staging_pages = int(self.extra.get("kvtier_staging_pages", 32))
        self._piece_bytes = _positive(self.extra, "kvtier_piece_bytes", PIECE_BYTES)
        self.counters = {"pages_set": 0, "pages_stored": 0, "pages_not_stored": 0, "pages_get": 0,
                         "pages_loaded": 0, "pages_missed": 0, "block_form_batches": 0, "inline_batches": 0}
        pool = kwargs.get("mem_pool_host") or next((a for a in args if hasattr(a, "page_size")), None)
        if pool is not None:
            self.register_mem_pool_host(pool)

    # -- namespace / connection ------------------------------------------------------

    def fingerprint(self) -> Fingerprint:
        c, pool, x = self.config, self.mem_pool_host, self.extra
        mla = bool(getattr(c, "is_mla_model", False))
        layout = getattr(pool, "layout", None) or ("page_first" if getattr(c, "is_page_first_layout", False)
                                                   else "layer_first")
        cp_size = int(getattr(c, "attn_cp_size", 1) or 1)
        if cp_size > 1:
            layout = f"{layout}-cp{int(getattr(c, 'attn_cp_rank', 0))}of{cp_size}"
        dtype = str(x.get("kvtier_dtype", getattr(pool, "dtype", "unknown"))).replace("torch.", "")
        return Fingerprint(
            model=str(x.get("kvtier_model", getattr(c, "model_name", None) or "")),
            dtype=dtype, kv_layout=f"sglang-{layout}",
            chunk_size=int(x.get("kvtier_chunk_size", 256)),
            block_size=int(getattr(pool, "page_size", x.get("kvtier_page_size", 64)) or 1),
            tp_rank=0 if mla else int(getattr(c, "tp_rank", 0)), tp_size=1 if mla else int(getattr(c, "tp_size", 1)),
            pp_rank=int(getattr(c, "pp_rank", 0)), pp_size=int(getattr(c, "pp_size", 1)),
            mla=mla, cache_salt=str(x.get("kvtier_cache_salt", "")))

    def _side_suffix(self, pool_name: str) -> str:
        """The TP rank for side-pool keys where the namespace does not carry it (MLA) and the
        pool is sharded by TP."""
        c = self.config
        size = int(getattr(c, "tp_size", 1) or 1)
        replicated = self.extra.get("kvtier_replicated_pools", ["indexer"])
        if not getattr(c, "is_mla_model", False) or size <= 1 or pool_name in replicated:
            return ""
        return f"@tp{int(getattr(c, 'tp_rank', 0))}of{size}"

    def register_mem_pool_host(self, mem_pool_host: Any) -> None:
        self.mem_pool_host = mem_pool_host
        self._close_client()  # the namespace and the staging region depend on the pool: dial again
        self._view = page_view(mem_pool_host) if mem_pool_host is not None else None

    def _close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._registered = False
        if self._staging is not None:
            self._staging.close()
            self._staging = None

    def close(self) -> None:
        self._close_client()

    def register_mem_host_pool_v2(self, host_pool: Any, host_pool_name: Any) -> None:
        if not hasattr(self, "registered_pools"):
            self.registered_pools = {}
        self.registered_pools[str(host_pool_name)] = host_pool
        if str(host_pool_name) == "kv" and self.mem_pool_host is None:
            self.register_mem_pool_host(host_pool)

    def _conn(self) -> Optional[KvtierClient]:
        """The client, dialled and (block form) registered on first use; None while the daemon is away."""
        if not self.health.ready():
            return None
        with self._conn_lock:  # SGLang's prefetch and backup threads may both get here first
            if self._client is None:
                self._client = self.session.client(self.fingerprint(), "sglang")
                self._registered = False
            if not self._registered and self._block_form and not self._register_staging(self._client):
                return None
            return self._client

    def _register_staging(self, client: KvtierClient) -> bool:
        """RegisterKv of the staging region, once per client (the client re-sends it after a
        reconnect); refused by the daemon: inline transfers from then on. False: the daemon
        is away (reported to health, registration tried again on the next dial)."""
        pool = self.mem_pool_host
        if pool is None or self._staging_pages <= 0:
            return True
        if self._staging is None:
            try:
                dummy = pool.get_dummy_flat_data_page()
                self._staging = Staging(int(dummy.numel()), dummy.dtype, self._staging_pages)
            except Exception as exc:  # no /dev/shm, an unusual pool
                log.warning("kvtier: no shm staging region (%s); using inline transfers", exc)
                self._block_form = False
                return True
        try:
            client.register_kv(self._staging.register_request(client.fingerprint.chunk_size))
            self._registered = True
        except (DaemonUnavailable, RequestTimeout) as exc:
            self._failed(exc)
            return False
        except KvtierError as exc:
            log.warning("kvtier: RegisterKv refused (%s); using inline transfers", exc)
            self._block_form = False
        return True

    @property
    def transfer_mode(self) -> str:
        """"blocks" when v1 pages move through the registered staging region, else "inline"."""
        return "blocks" if self._registered else "inline"

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
        """The leading run of pages a load would get: the daemon's Lookup, which also weighs
        whether Valkey-only pages are worth loading, without pinning anything."""
        client = self._conn()
        if client is None or not keys:
            return 0
        try:
            ok = client.lookup(keys=[k.encode() for k in keys], no_lease=True)
            self.health.ok()
            return int(ok.hit_chunks)
        except KvtierError as exc:
            self._failed(exc)
            return 0

    # -- zero-copy v1 API: pages of the registered host pool ---------------------------

    def _pages(self, host_indices: Any, n: int) -> Any:
        """Page numbers of the first n pages of host_indices (token slots, page-aligned)."""
        import torch

        page = int(getattr(self.mem_pool_host, "page_size", 1) or 1)
        return (host_indices[: n * page: page].to(torch.int64) // page).cpu()

    def batch_get_v1(self, keys: List[str], host_indices: Any, extra_info: Optional[Any] = None) -> List[bool]:
        client = self._conn()
        if client is not None and self._registered and keys:
            ok = self._get_blocks(client, keys, self._pages(host_indices, len(keys)))
        else:
            ok = self._get_inline(keys, host_indices)
        self.counters["pages_get"] += len(keys)
        self.counters["pages_loaded"] += sum(ok)
        self.counters["pages_missed"] += len(keys) - sum(ok)
        return ok

    def batch_set_v1(self, keys: List[str], host_indices: Any, extra_info: Optional[Any] = None) -> List[bool]:
        client = self._conn()
        if client is not None and self._registered and keys:
            ok = self._set_blocks(client, keys, self._pages(host_indices, len(keys)))
        else:
            pool, page = self.mem_pool_host, int(getattr(self.mem_pool_host, "page_size", 1) or 1)
            pages = self._pages(host_indices, len(keys))
            ok = self._put_many(keys, [_page_bytes(pool.get_data_page(int(p) * page, flat=True)) for p in pages])
            self.counters["inline_batches"] += 1
        self.counters["pages_set"] += len(keys)
        self.counters["pages_stored"] += sum(ok)
        self.counters["pages_not_stored"] += len(keys) - sum(ok)
        return ok

    def _get_inline(self, keys: List[str], host_indices: Any) -> List[bool]:
        pool = self.mem_pool_host
        page = int(getattr(pool, "page_size", 1) or 1)
        values = self._get_many(keys)
        ok: List[bool] = []
        for i, data in enumerate(values):
            if data is None or not ok_all(ok):
                ok.append(False)
                continue
            buf = pool.get_dummy_flat_data_page()
            if not _fill(buf, data):
                ok.append(False)
                continue
            pool.set_from_flat_data_page(int(host_indices[i * page].item()), buf)
            ok.append(True)
        self.counters["inline_batches"] += 1
        return ok

    def clear(self) -> None:
        """Removes every page of this backend's namespace from every tier (host and Valkey)."""
        client = self._conn()
        if client is None:
            return
        try:
            client.invalidate()
            self.health.ok()
        except KvtierError as exc:
            self._failed(exc)

    def get_stats(self) -> Any:
        """This backend's page counters and transfer mode, with the daemon's stats when reachable."""
        out: dict[str, Any] = {"transfer_mode": self.transfer_mode, **self.counters}
        client = self._conn()
        if client is not None:
            try:
                out["daemon"] = client.stats()
                self.health.ok()
            except KvtierError as exc:
                self._failed(exc)
        return out

    # -- pipelined helpers ---------------------------------------------------------------

    def _get_many(self, keys: List[str]) -> List[Optional[bytes]]:
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
        """One Put per page, pipelined; True only where the daemon says it holds the page
        (PutOk; a daemon that predates PutOk answers Ack, taken as stored)."""
        client = self._conn()
        if client is None:
            return [False] * len(keys)
        try:
            pend = [client.submit(proto.Put(key=k.encode(), value=v, want_put_ok=True)) for k, v in zip(keys, values)]
        except KvtierError as exc:
            self._failed(exc)
            return [False] * len(keys)
        ok: List[bool] = []
        for p in pend:
            try:
                field, msg = p.wait(self.timeout)[0]
                ok.append(bool(msg.stored) if field == "put_ok" else field == "ack")
            except KvtierError as exc:
                self._failed(exc)
                ok.append(False)
        return ok


def _positive(extra: dict, key: str, default: int) -> int:
    """An extra_config integer that must be > 0; ConfigError (KVT_CONFIG) otherwise."""
    value = extra.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"expected a positive integer for extra_config {key}, got {value!r}")
    return value


def ok_all(flags: List[bool]) -> bool:
    """A page after a missing one is useless to SGLang (prefix semantics): stop at the first miss."""
    return all(flags)
