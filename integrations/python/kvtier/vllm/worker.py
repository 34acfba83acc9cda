"""Worker half of KVTierConnector: register KV memory, load and save by block ids.

    register_kv_caches   regions + planes derived from the tensors → RegisterKv
                         (refused: inline mode, the worker copies chunk bytes itself)
    start_load_kv        sends every Store (SaveSpec) and Retrieve (LoadSpec) of the
                         step, pipelined on one connection; returns at once
    wait_for_layer_load  nothing: loads are asynchronous, their requests are not in
                         the batch until get_finished reports them
    get_finished         polls, never waits: saves whose StoreCopied arrived (blocks
                         reusable) in finished_sending; loads the daemon answered in
                         finished_recving, their failed blocks returned by the
                         get_block_ids_with_load_errors call of the same pass
    get_block_ids_with_load_errors   blocks of failed/unanswered Retrieves: vLLM
                         recomputes them

    step N   start_load_kv ─Retrieve─▶ kvtierd ─┐ scatters into the blocks
    step N+k get_finished: RetrieveDone arrived? ◀┘ yes: finished_recving (+ errors)

Inline mode (no shared memory) gathers saves and scatters loads on one copy
thread, so the step loop never copies chunk bytes either. A load unanswered
after kvtier_timeout_s is failed and the connection dropped, which makes the
daemon unmap this worker's regions instead of writing into reused blocks.
Failures never raise into vLLM: a failed load is reported as failed blocks, a
failed save is reported finished (its blocks freed) and logged.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Optional

from .. import proto
from ..client import KvtierClient, Pending
from ..errors import BadLayoutError, DaemonUnavailable, KvtierError, ProtocolError, RequestTimeout
from ..framing import NO_BLOCK, unpack_u32
from ..layout import (KvLayout, LayoutError, backend_dim_names, cross_layer_logical_view, derive_cross_layer_layout,
                      derive_layout)
from ..session import Reconnect, Session, release_lease
from ..torch_copy import TorchBlockCopier
from .metadata import KVTierConnectorMetadata, LoadSpec, SaveSpec
from .settings import KvGroup, Settings, group_fingerprint, rank_index, worker_ranks
from .stats import KVTierConnectorStats

log = logging.getLogger("kvtier.vllm")
NULL_BLOCK = 0   # vLLM's null block (block 0 of its pool)


@dataclass
class _Load:
    spec: LoadSpec
    lease: int
    pending: Optional[Pending]        # None: failed before it was sent
    inline: bool
    issued: float
    scatter: Optional[Future] = None  # inline: the copy thread's scatter of the answer


@dataclass
class _Save:
    spec: SaveSpec
    pending: Optional[Pending]        # block form: StoreCopied frees the blocks
    gather: Optional[Future] = None   # inline: done once the bytes are copied out
    issued: float = field(default_factory=time.monotonic)


class WorkerSide:
    """The worker connector for one KV cache group (all layers when vLLM gives no groups)."""

    def __init__(self, settings: Settings, group: Optional[KvGroup] = None, num_groups: int = 1) -> None:
        self.s = settings
        self.group = group
        self.group_index = group.index if group is not None else 0
        self.num_groups = num_groups
        self.tp_rank, self.pp_rank = worker_ranks(settings)
        self.rank = rank_index(settings.fingerprint, self.tp_rank, self.pp_rank)
        self.session = Session(settings.socket, settings.timeout_s, settings.retry_interval_s, log)
        self.health = self.session.health
        self.client: Optional[KvtierClient] = None
        self._reconnect: Optional[Reconnect] = None   # made with the client
        self._held: list[Any] = []          # LoadSpecs and SaveSpecs that arrived during a reconnect
        self.layout: Optional[KvLayout] = None
        self.codec: Optional[TorchBlockCopier] = None
        self.mode = "off"            # "blocks" | "inline" | "off"
        self._loads: dict[str, _Load] = {}
        self._saves: dict[str, _Save] = {}
        self._copier: Optional[ThreadPoolExecutor] = None
        self._finished_seen: set[str] = set()
        self._load_errors: set[int] = set()
        # Saves made during the steps (sliding-window chunks): queued at start_load_kv, issued
        # after the forward (wait_for_save), copied before the next forward (vLLM may hand the
        # blocks to another request then).
        self._step_queue: list[SaveSpec] = []
        self._step_inflight: list[_Save] = []
        # Cumulative counters (tests, logs) and the interval ones vLLM collects through
        # get_kv_connector_stats (reset on each collection).
        self.stats = {"loaded_chunks": 0, "failed_load_blocks": 0, "stored_chunks": 0, "failed_saves": 0}
        self.interval = KVTierConnectorStats()

    # -- registration -----------------------------------------------------------

    def register_kv_caches(self, kv_caches: dict[str, Any]) -> None:
        fp = group_fingerprint(self.s.fingerprint, self.group, self.num_groups)
        if self.group is not None and self.num_groups > 1:
            kv_caches = {n: t for n, t in kv_caches.items() if n in self.group.layer_names}
        try:
            layout = derive_layout(kv_caches, self.s.block_size, self.s.num_blocks, mla=fp.mla,
                                   allow_unshared=True)
        except LayoutError as exc:
            log.error("kvtier: cannot describe the KV cache layout, connector disabled: %s", exc)
            return
        self._use_layout(layout, fp)

    def register_cross_layers_kv_cache(self, kv_cache: Any, attn_backend: Any = None) -> None:
        """vLLM's one KV tensor for all layers (first dim num_layers): registered as one plane,
        a block one segment across every layer. Blocks that are not contiguous across layers
        (a backend's stride order kvtier does not expect) are described layer by layer.
        vLLM hands the tensor in its physical (blocks-first) order; attn_backend's stride order
        turns it back into the num_layers-first view (cross_layer_logical_view)."""
        fp = group_fingerprint(self.s.fingerprint, self.group, self.num_groups)
        kv_cache = cross_layer_logical_view(kv_cache, attn_backend)
        try:
            layout = derive_cross_layer_layout(kv_cache, self.s.block_size, self.s.num_blocks, mla=fp.mla,
                                               allow_unshared=True, dim_names=backend_dim_names(attn_backend))
        except LayoutError as exc:
            log.error("kvtier: cannot describe the cross-layer KV cache, connector disabled: %s", exc)
            return
        if layout is None:
            log.warning("kvtier: cross-layer KV blocks from %s are not contiguous across layers; "
                        "registering them layer by layer", getattr(attn_backend, "__name__", attn_backend))
            self.register_kv_caches({f"layer.{i}": kv_cache[i] for i in range(kv_cache.shape[0])})
            return
        self._use_layout(layout, fp)

    def _use_layout(self, layout: KvLayout, fp: Any) -> None:
        descriptor = group_fingerprint(self.s.fingerprint.replace(kv_layout=layout.descriptor), self.group,
                                       self.num_groups).kv_layout
        if descriptor != fp.kv_layout:
            log.warning("kvtier: KV layout is %s but the scheduler looks up %s; set "
                        "kv_connector_extra_config.kvtier_kv_layout=%s on this engine. Using %s: lookups "
                        "will miss, nothing wrong is loaded", layout.descriptor, fp.kv_layout,
                        layout.descriptor, descriptor)
        self.layout = layout
        self.codec = TorchBlockCopier(layout, self.s.chunk_size)
        self.client = self.session.client(
            fp.replace(tp_rank=self.s.namespace_tp_rank(self.tp_rank), pp_rank=self.pp_rank, kv_layout=descriptor),
            "vllm-worker", dial_on_request=False)
        client = self.client
        self._reconnect = Reconnect(lambda: self.mode != "off" and client.connected, self._connect)
        # Engine start, not a step: the one connect that may wait (a second at most for a
        # daemon that is away). After it, only a Reconnect's thread connects (_ready).
        try:
            self._connect()
            self.health.ok()
        except KvtierError as exc:
            self.health.failed(exc)

    def _connect(self) -> None:
        """Connects and, the first time, registers KV memory, which decides blocks vs inline
        mode (a reconnect re-sends the registration itself). Raises the KvtierError of a
        daemon away."""
        assert self.client is not None and self.layout is not None
        if self.mode == "off" and any(not r.shm_path and not r.cuda_ipc_handle for r in self.layout.regions):
            self.mode = "inline"
            log.info("kvtier: KV tensors are not in shared memory; using inline transfers")
        if self.mode != "off":
            self.client.connect()
            return
        try:
            ok = self.client.register_kv(self.layout.to_register())
            expected = self.layout.chunk_bytes(self.s.chunk_size)
            if ok.chunk_bytes and ok.chunk_bytes != expected:
                raise BadLayoutError(f"daemon computed chunk_bytes {ok.chunk_bytes}, "
                                     f"expected {expected}")
            self.mode = "blocks"
            log.info("kvtier: registered KV memory with kvtierd (%s backend, %d bytes per chunk)",
                     ok.backend, ok.chunk_bytes)
        except (DaemonUnavailable, RequestTimeout):
            self.client.close()
            raise
        except KvtierError as exc:
            self.mode = "inline"
            log.warning("kvtier: RegisterKv refused (%s); using inline transfers", exc)

    def _ready(self) -> bool:
        """Whether the daemon is connected (and KV memory registered). Never waits: a client
        that is not connected (the daemon restarted, or was away at engine start) is
        reconnected on a thread (session.Reconnect), and this answers False until that is done
        (start_load_kv holds the loads and saves that arrive meanwhile)."""
        return self._reconnect is not None and self._reconnect.poll(self.health)

    def _reconnecting(self) -> bool:
        return self._reconnect is not None and self._reconnect.dialling

    # -- per step ------------------------------------------------------------------

    def start_load_kv(self, meta: Optional[KVTierConnectorMetadata]) -> None:
        self._wait_step_saves()
        self._issue_held()
        if meta is None:
            return
        ready = self._ready()
        # A reconnect under way (a millisecond for a daemon that is back) holds this step's
        # loads and saves until it ends rather than failing them: vLLM keeps their blocks
        # until get_finished reports them, and no step waits for it.
        hold = not ready and self._reconnecting()
        for save in meta.saves:
            if save.group != self.group_index:
                continue
            if save.step:
                if ready and not (self.s.mla_one_copy and self.tp_rank != 0):
                    self._step_queue.append(save)
            elif hold:
                self._held.append(save)
            else:
                self._issue_save(save, ready)
        for load in meta.loads:
            if load.group != self.group_index:
                continue
            if hold:
                self._held.append(load)
            else:
                self._issue_load(load, ready)

    def _issue_held(self) -> None:
        """Issues the loads and saves held for a reconnect once it ended; if it failed, the
        loads fail (their blocks are recomputed) and the saves are skipped."""
        if not self._held:
            return
        ready = self._ready()
        if not ready and self._reconnecting():
            return
        held, self._held = self._held, []
        for spec in held:
            if isinstance(spec, LoadSpec):
                self._issue_load(spec, ready)
            else:
                self._issue_save(spec, ready)

    def wait_for_layer_load(self, layer_name: str) -> None:
        """Nothing to wait for: a loading request is not in this step's batch."""

    def wait_for_save(self) -> None:
        """After the forward: the step's saves (its KV is written now) go out; never waits."""
        queue, self._step_queue = self._step_queue, []
        for spec in queue:
            if self.client is None:
                break
            if self.mode == "blocks" and NULL_BLOCK not in spec.block_ids:
                try:
                    p = self.client.store_blocks(None, spec.block_ids, 0, keys=spec.keys, seed=spec.seed)
                    self._step_inflight.append(_Save(spec, p))
                except KvtierError as exc:
                    self._note_failure(exc)
                    self._count("failed_saves", 1)
            else:
                # A chunk with null blocks (outside every later reader's window) is gathered here:
                # block form refuses repeated block ids, and those bytes are never read.
                self._step_inflight.append(_Save(spec, None, self._copy_thread().submit(self._store_inline, spec)))

    def _wait_step_saves(self) -> None:
        """Before the next forward: the daemon (or the copy thread) has read the step saves'
        blocks. Bounded by kvtier_timeout_s; past it the connection is dropped, which makes the
        daemon unmap this worker's regions instead of reading reused blocks."""
        if not self._step_inflight:
            return
        deadline = time.monotonic() + self.s.timeout_s
        for sv in self._step_inflight:
            if sv.gather is not None:
                try:
                    sv.gather.result(timeout=max(0.0, deadline - time.monotonic()))
                except Exception as exc:  # noqa: BLE001 - a failed gather is a failed save
                    log.debug("kvtier: step save gather failed: %s", exc)
                    self._count("failed_saves", 1)
                continue
            while sv.pending is not None and not sv.pending.done(count=1) and time.monotonic() < deadline:
                time.sleep(0.0005)
            if sv.pending is not None and not sv.pending.done(count=1):
                self._note_failure(RequestTimeout(f"step save unanswered after {self.s.timeout_s:.3f}s"))
                if self.client is not None:
                    self.client.close()
                self._count("failed_saves", 1)
                continue
            self._save_done(sv)
        self._step_inflight = []

    def get_finished(self, finished_req_ids: set[str]) -> tuple[Optional[set[str]], Optional[set[str]]]:
        self._issue_held()
        recving = self._poll_loads()
        self._finished_seen |= set(finished_req_ids or ())
        done: set[str] = set()
        for req_id, save in list(self._saves.items()):
            if req_id in self._finished_seen and self._save_done(save):
                done.add(req_id)
                self.interval.finished("save", time.monotonic() - save.issued)
                del self._saves[req_id]
                self._finished_seen.discard(req_id)
        return (done or None), (recving or None)

    def get_block_ids_with_load_errors(self) -> set[int]:
        errors, self._load_errors = self._load_errors, set()
        return errors

    def shutdown(self) -> None:
        self._wait_step_saves()
        if self._copier is not None:
            self._copier.shutdown(wait=True)
        # Leases before the close, while there is a connection to release them on (a copy
        # still under way is pinned by the daemon on its own).
        for ld in self._loads.values():
            if ld.pending is not None:
                self._release(ld.lease)
        for spec in self._held:
            if isinstance(spec, LoadSpec) and spec.leases.get(self.rank):
                self._release(spec.leases[self.rank])
        self._held = []
        if self.client is not None:
            self.client.close()

    # -- loads ---------------------------------------------------------------------

    def _issue_load(self, spec: LoadSpec, ready: bool) -> None:
        lease = spec.leases.get(self.rank, 0)
        ld = _Load(spec, lease, None, inline=self.mode != "blocks", issued=time.monotonic())
        self._loads[spec.req_id] = ld
        if not ready or not lease or self.client is None:
            self._fail_load(spec, "kvtierd unavailable" if not ready else "no lease for this rank")
            return
        try:
            if self.mode == "blocks":
                ld.pending = self.client.retrieve_blocks(lease, spec.first_chunk, spec.num_chunks, spec.block_ids)
            else:
                ld.pending = self.client.submit(proto.Retrieve(lease_id=lease, first_chunk=spec.first_chunk,
                                                               num_chunks=spec.num_chunks))
        except KvtierError as exc:
            self._note_failure(exc)
            self._fail_load(spec, str(exc))

    def _poll_loads(self) -> set[str]:
        """Requests whose load ended (their chunks are in their blocks, or reported failed)."""
        now = time.monotonic()
        if any(ld.pending is not None and not ld.pending.done() and now - ld.issued > self.s.timeout_s
               for ld in self._loads.values()):
            # A late scatter could land in blocks vLLM has reused by then: drop the connection,
            # which makes the daemon unmap this worker's regions; every Pending on it fails.
            self._note_failure(RequestTimeout(f"Retrieve unanswered after {self.s.timeout_s:.3f}s"))
            if self.client is not None:
                self.client.close()
        ended: set[str] = set()
        for req_id, ld in list(self._loads.items()):
            if ld.scatter is not None:
                if not ld.scatter.done():
                    continue
                self._scattered(ld)
            elif ld.pending is not None:
                if not ld.pending.done():
                    continue
                if self._answered(ld):
                    continue                   # inline: scatter handed to the copy thread
            ended.add(req_id)
            del self._loads[req_id]
            self.interval.finished("load", time.monotonic() - ld.issued)
        return ended

    def _scattered(self, ld: _Load) -> None:
        assert ld.scatter is not None
        try:
            failed, loaded = ld.scatter.result()
        except Exception as exc:  # a scatter that raised leaves its blocks unknown: recompute them
            log.warning("kvtier: inline scatter for %s failed: %s", ld.spec.req_id, exc)
            self._fail_load(ld.spec, str(exc))
            return
        self._load_errors.update(failed)
        self._count("loaded_chunks", loaded)
        self._count("failed_load_blocks", len(failed))

    def _answered(self, ld: _Load) -> bool:
        """Takes a load's answer; True when its inline scatter still has to run."""
        assert ld.pending is not None
        try:
            field_name, done = ld.pending.wait(0.0)[0]
            if field_name != "retrieve_done":
                raise ProtocolError(f"expected retrieve_done, got {field_name}")
            if ld.inline:
                self._release(ld.lease)
                ld.scatter = self._copy_thread().submit(self._scatter_inline, ld.spec, done)
                return True
            failed = unpack_u32(done.failed_block_ids)
            if done.loaded_chunks + done.failed_chunks < ld.spec.num_chunks and not failed:
                raise ProtocolError(f"RetrieveDone accounts for "
                                    f"{done.loaded_chunks + done.failed_chunks} of {ld.spec.num_chunks} chunks")
            self._load_errors.update(b for b in failed if b != NO_BLOCK)
            self._count("loaded_chunks", done.loaded_chunks)
            self._count("failed_load_blocks", len(failed))
        except KvtierError as exc:
            self._note_failure(exc)
            self._fail_load(ld.spec, str(exc))
        self._release(ld.lease)
        return False

    def _scatter_inline(self, spec: LoadSpec, done: Any) -> tuple[set[int], int]:
        """On the copy thread: (blocks whose chunk was missing or short, chunks scattered)."""
        assert self.codec is not None
        B = self.s.blocks_per_chunk
        chunks = list(done.chunks)
        failed: set[int] = set()
        loaded = 0
        for j in range(spec.num_chunks):
            ids = spec.block_ids[j * B:(j + 1) * B]
            data = chunks[j] if j < len(chunks) else b""
            if len(data) != self.codec.chunk_bytes:
                failed.update(b for b in ids if b != NO_BLOCK)
                continue
            self.codec.scatter(data, ids)
            loaded += 1
        return failed, loaded

    def _fail_load(self, spec: LoadSpec, why: str) -> None:
        blocks = {b for b in spec.block_ids if b != NO_BLOCK}
        self._load_errors.update(blocks)
        self._count("failed_load_blocks", len(blocks))
        log.debug("kvtier: load of %s failed (%s): %d blocks to recompute", spec.req_id, why, len(blocks))

    def _release(self, lease: int) -> None:
        release_lease(self.client, lease)

    # -- saves ---------------------------------------------------------------------

    def _issue_save(self, spec: SaveSpec, ready: bool) -> None:
        if self.s.mla_one_copy and self.tp_rank != 0:
            # MLA: rank 0 stores the one copy every rank loads; this rank's blocks are free now
            self._saves[spec.req_id] = _Save(spec, None)
            return
        if not ready or self.client is None:
            self._saves[spec.req_id] = _Save(spec, None)
            return
        if self.mode != "blocks":
            self._saves[spec.req_id] = _Save(spec, None, self._copy_thread().submit(self._store_inline, spec))
            return
        try:
            p = self.client.store_blocks(spec.token_ids, spec.block_ids, spec.skip_chunks, keys=spec.keys,
                                         seed=spec.seed)
            self._saves[spec.req_id] = _Save(spec, p)
        except KvtierError as exc:
            self._note_failure(exc)
            self._count("failed_saves", 1)
            self._saves[spec.req_id] = _Save(spec, None)

    def _store_inline(self, spec: SaveSpec) -> None:
        """On the copy thread: gather the chunks (then the blocks are free) and send them."""
        assert self.codec is not None and self.client is not None
        B = self.s.blocks_per_chunk
        n = len(spec.keys) if spec.keys is not None else len(spec.token_ids) // self.s.chunk_size
        chunks = [self.codec.gather(spec.block_ids[i * B:(i + 1) * B]) for i in range(n)]
        try:
            self.client.store_inline(None if spec.keys is not None else spec.token_ids, chunks, keys=spec.keys,
                                     seed=spec.seed)
            self._count("stored_chunks", n)
        except KvtierError as exc:
            self._note_failure(exc)
            self._count("failed_saves", 1)

    def _save_done(self, save: _Save) -> bool:
        """True once the daemon no longer reads the blocks (StoreCopied, error, or daemon gone).
        Never waits."""
        if save.gather is not None:
            return save.gather.done()
        if save.pending is None:
            return True
        if not save.pending.done(count=1):
            return False
        try:
            (_, copied), = save.pending.wait(0.0, count=1)
            self._count("stored_chunks", copied.stored_chunks)
        except KvtierError as exc:
            self._note_failure(exc)
            self._count("failed_saves", 1)
            log.debug("kvtier: save of %s failed: %s", save.spec.req_id, exc)
        return True

    def _count(self, key: str, value: Any) -> None:
        self.stats[key] += value
        self.interval.add(key, value)

    def take_stats(self) -> Optional[KVTierConnectorStats]:
        """This interval's figures for vLLM (None when nothing happened), then a fresh interval."""
        if self.interval.is_empty():
            return None
        return self.interval.clone_and_reset()

    def handle_preemptions(self, preempted: set[str]) -> None:
        """Before vLLM reuses a preempted request's blocks: no transfer of ours may still write
        them. Saves only ever read blocks of finished requests (held by vLLM until get_finished),
        so only a load can be in flight; vLLM does not preempt a request waiting for its KV, but
        if one is, its load is waited for (bounded by kvtier_timeout_s), and one still
        unanswered drops the connection, which makes the daemon unmap this worker's regions."""
        inflight = [ld for rid, ld in self._loads.items() if rid in preempted]
        deadline = time.monotonic() + self.s.timeout_s
        for ld in inflight:
            if ld.pending is not None:
                while not ld.pending.done() and time.monotonic() < deadline:
                    time.sleep(0.001)
                if not ld.pending.done():
                    self._note_failure(RequestTimeout("load of a preempted request unanswered"))
                    if self.client is not None:
                        self.client.close()
            if ld.scatter is not None:
                ld.scatter.result()

    def _copy_thread(self) -> ThreadPoolExecutor:
        if self._copier is None:
            self._copier = ThreadPoolExecutor(1, thread_name_prefix="kvtier-copy")
        return self._copier

    def _note_failure(self, exc: KvtierError) -> None:
        if isinstance(exc, (DaemonUnavailable, RequestTimeout)):
            self.health.failed(exc)


class GroupedWorker:
    """The worker connector of a model with several KV cache groups: one WorkerSide per group
    (its layers, its namespace, its own connection and registration). A request is reported
    finished (sending or recving) once every group that had a transfer for it reported it,
    which is what vLLM's block accounting needs: one report per request and worker."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        n = len(settings.groups)
        self.sides = [WorkerSide(settings, g, n) for g in settings.groups]
        self.tp_rank, self.pp_rank = self.sides[0].tp_rank, self.sides[0].pp_rank
        self.rank = self.sides[0].rank
        self._want_send: dict[str, set[int]] = {}
        self._want_recv: dict[str, set[int]] = {}
        self._got_send: dict[str, set[int]] = {}
        self._got_recv: dict[str, set[int]] = {}

    @property
    def stats(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for side in self.sides:
            for k, v in side.stats.items():
                out[k] = out.get(k, 0) + v
        return out

    @property
    def mode(self) -> str:
        modes = {side.mode for side in self.sides}
        return modes.pop() if len(modes) == 1 else "mixed"

    def register_kv_caches(self, kv_caches: dict[str, Any]) -> None:
        for side in self.sides:
            side.register_kv_caches(kv_caches)

    def start_load_kv(self, meta: Optional[KVTierConnectorMetadata]) -> None:
        if meta is None:
            return
        for save in meta.saves:
            if not save.step:            # step saves are no request_finished hold: never reported
                self._want_send.setdefault(save.req_id, set()).add(save.group)
        for load in meta.loads:
            self._want_recv.setdefault(load.req_id, set()).add(load.group)
        for side in self.sides:
            side.start_load_kv(meta)

    def wait_for_layer_load(self, layer_name: str) -> None:
        """Nothing to wait for (see WorkerSide)."""

    def wait_for_save(self) -> None:
        for side in self.sides:
            side.wait_for_save()

    def get_finished(self, finished_req_ids: set[str]) -> tuple[Optional[set[str]], Optional[set[str]]]:
        for g, side in enumerate(self.sides):
            snd, rcv = side.get_finished(finished_req_ids)
            for rid in snd or ():
                self._got_send.setdefault(rid, set()).add(g)
            for rid in rcv or ():
                self._got_recv.setdefault(rid, set()).add(g)
        return self._complete(self._want_send, self._got_send), self._complete(self._want_recv, self._got_recv)

    @staticmethod
    def _complete(want: dict[str, set[int]], got: dict[str, set[int]]) -> Optional[set[str]]:
        done = {rid for rid, gs in got.items() if gs >= want.get(rid, set())}
        for rid in done:
            got.pop(rid, None)
            want.pop(rid, None)
        return done or None

    def get_block_ids_with_load_errors(self) -> set[int]:
        out: set[int] = set()
        for side in self.sides:
            out |= side.get_block_ids_with_load_errors()
        return out

    def handle_preemptions(self, preempted: set[str]) -> None:
        for side in self.sides:
            side.handle_preemptions(preempted)

    def take_stats(self) -> Optional[KVTierConnectorStats]:
        total: Optional[KVTierConnectorStats] = None
        for side in self.sides:
            st = side.take_stats()
            if st is not None:
                total = st if total is None else total.aggregate(st)
        return total

    def shutdown(self) -> None:
        for side in self.sides:
            side.shutdown()
