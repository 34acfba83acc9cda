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
Exists for a piece the daemon partly skipped), Lookup + Retrieve into slots,
both pipelined in pieces of about 16 MiB so that the daemon's copy of one
piece runs on another core while this process copies the next (set) or the
previous one (get):

    get   daemon slabs->slots  ██1██2██3██4
          scatter slots->pool       ██1██2██3██4
    set   gather pool->slots   ██1██2██3██4
          daemon slots->slabs       ██1██2██3██4
"""
from __future__ import annotations

import threading
import time
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
    """src[:n] into host pages `pages`: a copy_ per run of consecutive pages, or one index_copy_."""
    n = int(pages.numel())
    if view is not None:
        src = src[:n].view(n, *view.shape[1:])
        runs = page_runs(pages)
        # index_copy_ over a strided page view ran at half memcpy speed here (2.5 against 5 GB/s,
        # 8 MiB page_first pages); copy_ of a slice is a memcpy per contiguous piece. Runs pay a
        # Python call each, so scattered small pages keep the one index_copy_.
        if len(runs) == 1 or n * src[0].numel() * src.element_size() >= len(runs) * _RUN_BYTES:
            for a, b, j in runs:
                view[a:b].copy_(src[j:j + b - a])
        else:
            view.index_copy_(0, pages, src)
        return
    page = int(pool.page_size)
    for j in range(n):
        pool.set_from_flat_data_page(int(pages[j]) * page, src[j])


# A copy_ call per run is worth it when runs average at least this many bytes.
_RUN_BYTES = 1 << 20


def page_runs(pages: Any) -> List[tuple[int, int, int]]:
    """(first page, end page, index into pages) of each run of consecutive page numbers."""
    ids = pages.tolist()
    runs: List[tuple[int, int, int]] = []
    for j, p in enumerate(ids):
        if runs and runs[-1][1] == p:
            a, _, k = runs[-1]
            runs[-1] = (a, p + 1, k)
        else:
            runs.append((p, p + 1, j))
    return runs


# Bytes per piece of a pipelined batch: the daemon copies piece k+1 while this process copies
# piece k, so where memory bandwidth allows both copies at once the batch costs about
# max(daemon copy, our copy) plus one piece, not their sum (on the 2-core VM it does not:
# docs/benchmarks.md measured no gain there, and no loss).
# 16 MiB keeps the unhidden first piece a few ms and the per-request overhead (~0.1 ms) small.
PIECE_BYTES = 16 << 20


def pieces(n: int, page_bytes: int, piece_bytes: int = PIECE_BYTES) -> List[tuple[int, int]]:
    """[start, end) ranges of n pages, each about piece_bytes (at least one page)."""
    step = max(1, piece_bytes // max(1, page_bytes))
    return [(a, min(n, a + step)) for a in range(0, n, step)]


class BlockFormMixin:
    """v1 pages by slot id, pipelined in pieces. Needs `_staging`, `_view`, `_piece_bytes`,
    `mem_pool_host`, `timeout`, `counters`, `health` and `_failed()` (storage.py)."""

    def _set_blocks(self, client: Any, keys: List[str], pages: Any) -> List[bool]:
        """Pages into the set half of the staging region, a piece at a time; each piece's Store
        by slot id is sent as soon as its pages are in, so the daemon copies it into slabs while
        the next piece is gathered. Then every piece's StoreCopied is awaited (the slots are
        reusable after it) before the half is given back."""
        staging = self._staging
        assert staging is not None
        first, half, lock = staging.half(True)
        ok: List[bool] = []
        with lock:
            for s in range(0, len(keys), staging.slots):
                part = keys[s:s + staging.slots]
                ok.extend(self._set_part(client, part, pages[s:s + len(part)], first, half))
        return ok

    def _set_part(self, client: Any, keys: List[str], pages: Any, first: int, half: Any) -> List[bool]:
        sent: List[tuple[int, int, Any]] = []
        deadline = time.monotonic() + self.timeout  # the whole part, as one Store had before
        try:
            for a, b in pieces(len(keys), self._staging.page_bytes, self._piece_bytes):
                gather(self.mem_pool_host, self._view, pages[a:b], half[a:b])
                body = proto.Store(address=proto.ChunkAddress(keys=[k.encode() for k in keys[a:b]]),
                                   block_ids=pack_u32(range(first + a, first + b)))
                sent.append((a, b, client.submit(body, expect=2)))
        except KvtierError as exc:
            self._failed(exc)
        ok = [False] * len(keys)
        for a, b, pending in sent:
            try:
                copied = pending.wait(_left(deadline), count=1)[0][1]
            except KvtierError as exc:
                self._failed(exc)
                continue
            self.counters["block_form_batches"] += 1
            self.health.ok()
            if copied.stored_chunks + copied.present_chunks == b - a:
                ok[a:b] = [True] * (b - a)
            else:  # some were skipped (host tier full of pinned chunks): which ones?
                ok[a:b] = self._held(client, keys[a:b])
        return ok

    def _held(self, client: Any, keys: List[str]) -> List[bool]:
        try:
            return [bool(f) for f in client.exists([k.encode() for k in keys]).found]
        except KvtierError as exc:
            self._failed(exc)
            return [False] * len(keys)

    def _get_blocks(self, client: Any, keys: List[str], pages: Any) -> List[bool]:
        """Lookup (a lease on the leading run), then Retrieve into the get half by slot id in
        pieces, all sent at once: the daemon fills piece k+1's slots while piece k is scattered
        into the host pool. A page counts as loaded only once its bytes are in the host pool."""
        staging = self._staging
        assert staging is not None
        first, half, lock = staging.half(False)
        ok: List[bool] = []
        with lock:
            for s in range(0, len(keys), staging.slots):
                part = keys[s:s + staging.slots]
                loaded = self._get_part(client, part, pages[s:s + len(part)], first, half) if all(ok) else 0
                ok.extend([True] * loaded + [False] * (len(part) - loaded))
        return ok

    def _get_part(self, client: Any, keys: List[str], pages: Any, first: int, half: Any) -> int:
        """How many leading pages of `keys` are now in the host pool."""
        try:
            found = client.lookup(keys=[k.encode() for k in keys])
        except KvtierError as exc:
            self._failed(exc)
            return 0
        hit, lease = int(found.hit_chunks), int(found.lease_id)
        if hit == 0:
            return 0
        sent: List[tuple[int, int, Any]] = []
        loaded, broken = 0, False
        deadline = time.monotonic() + self.timeout  # the whole part, as one Retrieve had before
        try:
            try:
                for a, b in pieces(hit, self._staging.page_bytes, self._piece_bytes):
                    sent.append((a, b, client.retrieve_blocks(lease, a, b - a, list(range(first + a, first + b)))))
            except KvtierError as exc:
                self._failed(exc)
            # Every piece sent is waited for, even after a failure, so no copy of this call is
            # still writing into the slots when the half goes to the next caller.
            for a, b, pending in sent:
                try:
                    done = pending.wait(_left(deadline))[0][1]
                except KvtierError as exc:
                    self._failed(exc)
                    broken = True
                    continue
                if broken:
                    continue
                self.counters["block_form_batches"] += 1
                self.health.ok()
                failed = set(unpack_u32(done.failed_block_ids))
                n = 0
                while a + n < b and first + a + n not in failed:
                    n += 1
                if n:
                    scatter(self.mem_pool_host, self._view, pages[a:a + n], half[a:a + n])
                loaded += n
                broken = a + n < b
        finally:
            try:
                client.release_lease(lease)
            except KvtierError as exc:  # the lease then expires by its TTL
                self._failed(exc)
        return loaded


def _left(deadline: float) -> float:
    """Seconds to a deadline; a piece whose answer is already here still gets it after it."""
    return max(0.001, deadline - time.monotonic())
