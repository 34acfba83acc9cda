"""Host pages in block form: an shm staging region registered with kvtierd.

The daemon cannot map SGLang's host pool (pinned anonymous memory), so the
backend registers one /dev/shm region of its own, once per connection, and
moves pages through it by slot id; the socket carries ids, never bytes:

    staging region  [ get half: slots 0..n-1 | set half: slots n..2n-1 ]
    slot s          one flat host page, contiguous (= get_data_page(flat=True))
    RegisterKv      one plane: block_stride = block_bytes = page bytes,
                    block_size = chunk_size, so one block is one chunk

A slot holds a page byte for byte as the inline path sends it, so pages
stored either way load either way. The two halves let the prefetch and
backup threads work at once; a lock per half keeps each to one user.

page_view() finds, for SGLang's layouts (layer_first, page_first,
page_first_direct, page_head; MHA and MLA pools; page_head is MHA only), a
view V of kv_buffer with V[p] =
page p: a whole batch then moves with one index_select (set) or one
index_copy_ (get). The view is checked once against the pool's own
get_data_page; a pool it does not fit goes page by page through the slots.
BlockFormMixin holds the v1 transfers themselves: Store by slot ids (an
Exists for a batch the daemon partly skipped), Lookup + Retrieve into slots.
"""
from __future__ import annotations

import threading
from typing import Any, List, Optional

from .. import proto, shm
from ..errors import KvtierError
from ..framing import pack_u32, unpack_u32
from ..torch_compat import untyped_storage

# (layout, kv_buffer dims) -> the dim that counts tokens (split into pages) or pages.
_TOKEN_DIM = {("layer_first", 5): 2, ("layer_first", 4): 1, ("page_first", 5): 1, ("page_first", 4): 0}
_PAGE_DIM = {("page_first_direct", 6): 1, ("page_first_direct", 5): 0, ("page_head", 6): 1}


def page_view(pool: Any) -> Optional[Any]:
    """V with V[p] the elements of host page p in get_data_page order, or None."""
    import torch

    buf, layout, page = getattr(pool, "kv_buffer", None), getattr(pool, "layout", None), int(pool.page_size)
    if not isinstance(buf, torch.Tensor):
        return None
    key = (str(layout), buf.dim())
    if key in _TOKEN_DIM:
        d = _TOKEN_DIM[key]
        if buf.shape[d] % page:
            return None
        view = buf.unflatten(d, (buf.shape[d] // page, page)).movedim(d, 0)
    elif key in _PAGE_DIM:
        view = buf.movedim(_PAGE_DIM[key], 0)
    else:
        return None
    return view if _matches(pool, view, page) else None


def _matches(pool: Any, view: Any, page: int) -> bool:
    """The view addresses exactly what the pool's get_data_page returns (first and last page)."""
    for p in (0, view.shape[0] - 1):
        try:
            ref = pool.get_data_page(p * page, flat=False)
        except Exception:
            return False
        mine = view[p]
        if (ref.data_ptr() != mine.data_ptr() or ref.numel() != mine.numel()
                or tuple(ref.squeeze().shape) != tuple(mine.squeeze().shape)
                or tuple(ref.squeeze().stride()) != tuple(mine.squeeze().stride())):
            return False
    return True


class Staging:
    """The shm staging region: `slots` pages per direction."""

    def __init__(self, page_elems: int, dtype: Any, slots: int) -> None:
        import torch

        self.slots = slots
        self.page_elems = page_elems
        self._alloc = shm.ShmAllocator(prefix="kvtier-sglang")
        self.buf = self._alloc.empty((2 * slots, page_elems), dtype)
        self.page_bytes = page_elems * torch.empty((), dtype=dtype).element_size()
        region = shm.lookup(untyped_storage(self.buf).data_ptr())
        if region is None:
            raise RuntimeError("the staging tensor is not in kvtier's shm registry")
        self.path = region.path
        self.locks = (threading.Lock(), threading.Lock())

    def register_request(self, chunk_size: int) -> Any:
        size = 2 * self.slots * self.page_bytes
        return proto.RegisterKv(
            regions=[proto.KvRegion(region_id=1, size_bytes=size, shm_path=self.path)],
            planes=[proto.KvPlane(layer=0, region_id=1, offset=0, block_stride=self.page_bytes,
                                  block_bytes=self.page_bytes)],
            num_blocks=2 * self.slots, block_size=chunk_size)

    def half(self, setting: bool) -> tuple[int, Any, threading.Lock]:
        """First slot id, the half's tensor (slots x page_elems) and its lock."""
        first = self.slots if setting else 0
        return first, self.buf[first:first + self.slots], self.locks[1 if setting else 0]

    def close(self) -> None:
        self._alloc.close()


def gather(pool: Any, view: Optional[Any], pages: Any, dst: Any) -> None:
    """Host pages `pages` (page numbers) into dst[:n]: one index_select when there is a view."""
    import torch

    n = int(pages.numel())
    if view is not None:
        torch.index_select(view, 0, pages, out=dst[:n].view(n, *view.shape[1:]))
        return
    page = int(pool.page_size)
    for j in range(n):
        dst[j].copy_(pool.get_data_page(int(pages[j]) * page, flat=True).reshape(-1))


def scatter(pool: Any, view: Optional[Any], pages: Any, src: Any) -> None:
    """src[:n] into host pages `pages`: one index_copy_ when there is a view."""
    n = int(pages.numel())
    if view is not None:
        view.index_copy_(0, pages, src[:n].view(n, *view.shape[1:]))
        return
    page = int(pool.page_size)
    for j in range(n):
        pool.set_from_flat_data_page(int(pages[j]) * page, src[j])


class BlockFormMixin:
    """v1 pages by slot id. Needs `_staging`, `_view`, `mem_pool_host`, `timeout`, `counters`,
    `health` and `_failed()` (storage.py)."""

    def _set_blocks(self, client: Any, keys: List[str], pages: Any) -> List[bool]:
        """Pages into the set half of the staging region, then Store by slot id, a half at a time."""
        staging = self._staging
        assert staging is not None
        first, half, lock = staging.half(True)
        ok: List[bool] = []
        with lock:
            for s in range(0, len(keys), staging.slots):
                part = keys[s:s + staging.slots]
                n = len(part)
                try:
                    gather(self.mem_pool_host, self._view, pages[s:s + n], half)
                    body = proto.Store(address=proto.ChunkAddress(keys=[k.encode() for k in part]),
                                       block_ids=pack_u32(range(first, first + n)))
                    copied = client.submit(body, expect=2).wait(self.timeout, count=1)[0][1]
                    self.counters["block_form_batches"] += 1
                    self.health.ok()
                except KvtierError as exc:
                    self._failed(exc)
                    ok.extend([False] * (len(keys) - s))
                    break
                if copied.stored_chunks + copied.present_chunks == n:
                    ok.extend([True] * n)
                else:  # some were skipped (host tier full of pinned chunks): which ones?
                    ok.extend(self._held(client, part))
        return ok

    def _held(self, client: Any, keys: List[str]) -> List[bool]:
        try:
            return [bool(f) for f in client.exists([k.encode() for k in keys]).found]
        except KvtierError as exc:
            self._failed(exc)
            return [False] * len(keys)

    def _get_blocks(self, client: Any, keys: List[str], pages: Any) -> List[bool]:
        """Lookup (a lease on the leading run), Retrieve into the get half by slot id, release,
        then the loaded slots into the host pool with one scatter."""
        staging = self._staging
        assert staging is not None
        first, half, lock = staging.half(False)
        ok: List[bool] = []
        with lock:
            for s in range(0, len(keys), staging.slots):
                part = keys[s:s + staging.slots]
                loaded = self._retrieve(client, part, first) if all(ok) else 0
                if loaded:
                    scatter(self.mem_pool_host, self._view, pages[s:s + loaded], half)
                ok.extend([True] * loaded + [False] * (len(part) - loaded))
        return ok

    def _retrieve(self, client: Any, keys: List[str], first: int) -> int:
        """How many leading pages of `keys` landed in slots first, first+1, ..."""
        try:
            found = client.lookup(keys=[k.encode() for k in keys])
            hit, lease = int(found.hit_chunks), int(found.lease_id)
            if hit == 0:
                return 0
            try:
                done = client.retrieve_blocks(lease, 0, hit, list(range(first, first + hit))).wait(self.timeout)[0][1]
            finally:
                client.release_lease(lease)
            self.counters["block_form_batches"] += 1
            self.health.ok()
        except KvtierError as exc:
            self._failed(exc)
            return 0
        failed = set(unpack_u32(done.failed_block_ids))
        n = 0
        while n < hit and first + n not in failed:
            n += 1
        return n
