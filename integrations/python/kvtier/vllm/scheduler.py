"""Scheduler half of KVTierConnector: Lookup, lease, hand block ids to workers.

    get_num_new_matched_tokens ──Lookup (one per KV group, for every tp/pp rank)──▶ kvtierd
        keeps the leases; claims min(hit, prompt_len - 1) tokens beyond the local hit and
        returns (n, True): the load is asynchronous (WAITING_FOR_REMOTE_KVS)
    update_state_after_alloc    num_external_tokens > 0: a LoadSpec from the blocks just
                                allocated for them; 0 (the second call after the load, or
                                no load): nothing, the lookup's leases are released
    build_connector_meta        this step's LoadSpecs + SaveSpecs; releases leases of
                                lookups that were not allocated
    update_connector_output     finished_recving ends a load; invalid_block_ids (failed
                                loads, recomputed): those chunks no longer count as cached
                                for request_finished, and the request is not offered again
    request_finished            SaveSpec for the request's full chunks; returns True
                                so vLLM holds the blocks until workers report
                                StoreCopied through get_finished. A request aborted while
                                its load is in flight returns False: vLLM itself keeps a
                                WAITING_FOR_REMOTE_KVS request's blocks until the worker
                                reports it in finished_recving (the daemon has answered)

KV cache groups (vLLM's hybrid memory allocator, SupportsHMA): every group's
layers are chunks of their own namespace (settings.group_fingerprint), as
OffloadingConnector moves every group's blocks of an offloaded range.
    full attention   looked up and stored by token chain, like the single group
    sliding window   a later request reads only the last `window` tokens before
                     its hit end, and vLLM frees (nulls) a group's blocks that fell
                     out of the window. So its chunks are keyed (a token chain of
                     fixed root) and stored during the steps, in the step a chunk
                     is completed, while the window before the chunk's end is
                     still resident (build_connector_meta: SaveSpec step=True;
                     the worker stores after the forward and waits for the copy
                     before the next forward, since vLLM may reuse those blocks
                     then). A chunk's bytes outside that window are never read by
                     any later hit and may be the null block's. Looked up for the
                     window before the hit end only, once the full-attention
                     groups answered; a window not all cached shortens the hit
                     until it is. Each round is polled across steps like the
                     first Lookup, never waited for inside one
    anything else    (mamba state, chunked-local): the model is never looked up
                     nor saved (bypassed, counted); a half-restored state is wrong
A hit restores every group's KV the first computed token needs, or is shortened
(at worst to a miss).

Never raises into vLLM: an unreachable daemon is a miss (warned once). Never
dials inside a step: the clients connect at engine start, and again after a
daemon restart on a thread of their own (session.Reconnect).
A request's cache_salt, LoRA adapter and multimodal hashes seed its chunk hash
chain (kvtier.vllm.keys, ChunkAddress.seed): other salts, adapters or images
never share its chunks. Requests still not keyable (prompt embeddings, a
multimodal feature without a hash, a daemon that does not honour seeds) are
neither looked up nor saved, and counted with the reason.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from .. import proto
from ..client import KvtierClient, address
from ..errors import KvtierError, RequestTimeout
from ..framing import NO_BLOCK, u32_array
from ..session import Reconnect, Session, release_lease
from .metadata import KVTierConnectorMetadata, LoadSpec, SaveSpec
from ..hashing import chunk_hashes
from .settings import KvGroup, Settings, group_fingerprint, rank_index
from .keys import request_seed
from .stats import KVTierConnectorStats

log = logging.getLogger("kvtier.vllm")


# Root of the chain that keys sliding-window chunks (the daemon hashes each key into the
# group's namespace, so the root only has to be fixed).
SLIDING_CHAIN_ROOT = b"kvtier-vllm-sliding-window-chunks-v1"


@dataclass
class _Lookup:
    hit_chunks: int
    usable_tokens: int
    leases: dict[tuple[int, int], int]          # (rank index, group) -> lease (one per rank)
    local_tokens: int = 0
    base: dict[int, int] = field(default_factory=dict)   # sliding group -> absolute chunk of lease chunk 0


@dataclass
class _Asked:
    """One request's Lookups, sent when vLLM first asked about it and polled at each step
    after: first one per full-attention group, then, where the model has sliding-window
    groups, rounds of window Lookups (a window not all cached shortens the hit and asks
    again). No round is waited for beyond lookup_wait_s inside a step."""
    pending: dict[int, Any]                      # group -> Pending LookupOk of this round
    computed: int                                # num_computed_tokens they were sent for
    t0: float                                    # when this round was sent
    leases: dict[tuple[int, int], int] = field(default_factory=dict)   # taken from answers so far
    usable: int = -1                             # window rounds: the hit they check
    first: dict[int, int] = field(default_factory=dict)  # window rounds: group -> first chunk asked
    rounds: int = 0                              # window rounds sent
    keys: Optional[list[bytes]] = None           # the sliding-window chain, hashed once
    result: Optional["_Lookup"] = None           # the outcome once no round is left (None: a miss)

    def answered(self, wait_s: float) -> bool:
        """Whether every answer of this round is in, waiting at most wait_s for the rest."""
        deadline = time.monotonic() + wait_s
        for p in self.pending.values():
            while not p.done():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                try:
                    p.wait(left)
                except RequestTimeout:
                    return False
                except KvtierError:
                    break                        # failed: _advance raises it
        return True


class SchedulerSide:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        fp = settings.fingerprint
        session = Session(settings.socket, settings.timeout_s, settings.retry_interval_s, log)
        # One implicit group when vLLM gave no KV cache groups (older vLLM, tests).
        self.groups: list[Optional[KvGroup]] = list(settings.groups) or [None]
        n = len(self.groups)
        # One client per KV group whose Lookups answer for every tp x pp rank (Hello.lookup_ranks):
        # the daemon hashes the prompt once and leases each rank's chunks in its namespace. MLA one
        # copy: every rank names rank 0's namespace, each with a lease of its own (a worker
        # releases its lease once its load ended).
        self.rank_keys = [rank_index(fp, tp, pp) for pp in range(fp.pp_size) for tp in range(fp.tp_size)]
        ranks = [(settings.namespace_tp_rank(tp), pp) for pp in range(fp.pp_size) for tp in range(fp.tp_size)]
        self.clients: dict[int, KvtierClient] = {
            g: session.client(group_fingerprint(fp, group, n).replace(tp_rank=0, pp_rank=0), "vllm-scheduler",
                              lookup_ranks=ranks if len(ranks) > 1 else (), dial_on_request=False)
            for g, group in enumerate(self.groups)}
        self.health = session.health
        # Connected at engine start, so that no scheduler step waits for a Hello: a Lookup's
        # answer is polled across steps (vLLM's None), but a Hello is a round trip of its own.
        # A daemon that is down now is reconnected to off the step loop once it is back (_dialled).
        try:
            for c in self.clients.values():
                c.connect()
            self.health.ok()
        except KvtierError as exc:
            self.health.failed(exc)
        self._lookups: dict[str, _Lookup] = {}
        self._to_load: list[LoadSpec] = []
        self._loading: set[str] = set()            # LoadSpec sent, finished_recving not seen
        self._load_failed: set[str] = set()        # a load failed: never offered again
        self._saves: list[SaveSpec] = []
        self._loaded_chunks: dict[str, int] = {}
        self._load_blocks: dict[tuple[str, int], tuple[int, list[int]]] = {}  # (req, group) -> (first chunk, ids)
        self.interval = KVTierConnectorStats()     # taken by get_kv_connector_stats
        self._bypass_counted: set[str] = set()     # a request is counted once, not per lookup
        self._asked: dict[str, _Asked] = {}        # Lookups sent, answers not all in yet
        self._orphans: list[_Asked] = []           # given up on: leases released when answered
        # reconnects of clients the daemon dropped, off the step loop
        self._reconnects = [Reconnect(lambda c=c: c.connected, c.connect) for c in self.clients.values()]
        # Sliding-window groups: running requests' block tables (from the SchedulerOutput) and
        # the next chunk to store per group, for the saves made during the steps.
        self._sliding = [g for g in range(len(self.groups)) if self._kind(g) == "sliding"]
        self._requests: dict[str, Any] = {}
        self._tables: dict[str, list[list[int]]] = {}
        self._next_chunk: dict[str, dict[int, int]] = {}

    # -- vLLM hooks -----------------------------------------------------------

    def get_num_new_matched_tokens(self, request: Any, num_computed_tokens: int) -> tuple[Optional[int], bool]:
        req_id = request.request_id
        self._release(self._lookups.pop(req_id, None))
        asked = self._asked.get(req_id)
        if asked is not None and asked.computed != num_computed_tokens:
            self._drop_asked(req_id)      # vLLM's local prefix moved on: ask anew
            asked = None
        reason = self._bypass_reason(request)
        if reason:
            if req_id not in self._bypass_counted:
                self._bypass_counted.add(req_id)
                self.interval.add("bypassed")
                self.interval.add("bypassed_" + reason.split(":")[0])
                self._report_bypass(reason.split(":")[0])
            self._drop_asked(req_id)
            return 0, False
        if (not self.s.load or req_id in self._loading or req_id in self._load_failed
                or not self.health.ready()):
            # A Lookup still out for it (health failed meanwhile) must not be reused later,
            # with an old t0 and leases past their TTL: its leases are released as it lands.
            self._drop_asked(req_id)
            return 0, False
        # vLLM's own list, read and never copied: this runs at every step a request waits
        # (a 128K-token copy is ~0.3 ms), and u32_array packs a list fastest.
        tokens = request.prompt_token_ids or []
        if not isinstance(tokens, list):
            tokens = list(tokens)
        if len(tokens) <= self.s.chunk_size:
            self._drop_asked(req_id)
            return 0, False
        seed, _ = request_seed(request)
        try:
            if asked is None:
                if not self._dialled():
                    return None, False    # reconnecting off the step loop: vLLM asks again next step
                if seed and not self._daemon_seeds():
                    return None, False    # connected just now: the next call sees whether to bypass
                asked = self._asked[req_id] = self._ask(tokens, num_computed_tokens, seed)
            deadline = time.monotonic() + self.s.lookup_wait_s
            while True:
                if not asked.answered(max(0.0, deadline - time.monotonic())):
                    if time.monotonic() - asked.t0 < self.s.lookup_timeout_s:
                        return None, False    # vLLM asks again next step; the batch does not wait
                    self._drop_asked(req_id)
                    raise RequestTimeout(f"Lookup unanswered after {self.s.lookup_timeout_s:.3f}s")
                if not self._advance(asked, tokens, seed):
                    break                 # no round left: asked.result is the outcome
            del self._asked[req_id]
            lk = asked.result
            self.health.ok()
        except KvtierError as exc:
            self._drop_asked(req_id)      # its other answers' leases are released as they come
            self.health.failed(exc)
            return 0, False
        if lk is None:
            return 0, False
        self._lookups[req_id] = lk
        self.interval.add("lookups")
        self.interval.add("hit_tokens", lk.usable_tokens - num_computed_tokens)
        return lk.usable_tokens - num_computed_tokens, True

    def _dialled(self) -> bool:
        """Whether every client is connected. One that is not (the daemon restarted) is
        reconnected on a thread (session.Reconnect) and this answers False until that is done;
        a reconnect that failed starts the health back-off (a miss until it ends)."""
        return all([r.poll(self.health) for r in self._reconnects])   # a list: poll every one

    def _kind(self, g: int) -> str:
        group = self.groups[g]
        return "full" if group is None else group.kind

    def _ask(self, tokens: list[int], num_computed: int, seed: bytes) -> "_Asked":
        """Sends one Lookup per full-attention group (each answers for every rank), the prompt
        packed once for all of them; the answers are collected by _lookup."""
        full = [g for g in self.clients if self._kind(g) != "sliding"]
        packed = u32_array(tokens) if full else None
        pending = {g: self.clients[g].submit_lookup(packed, seed, self.s.lease_ttl_ms) for g in full}
        return _Asked(pending, num_computed, time.monotonic())

    def _drop_asked(self, req_id: str) -> None:
        """A Lookup given up on (timed out, or its request moved on or finished): its leases
        are released once its answers arrive (build_connector_meta polls them)."""
        asked = self._asked.pop(req_id, None)
        if asked is not None:
            self._orphans.append(asked)

    def _release_orphans(self) -> None:
        keep = []
        for asked in self._orphans:
            if not all(p.done() for p in asked.pending.values()):
                keep.append(asked)
                continue
            self._release(_Lookup(0, 0, asked.leases))
            for g, p in asked.pending.items():
                try:
                    _, ok = p.wait(0)[0]
                except KvtierError:
                    continue
                for lease in (list(ok.lease_ids) or [ok.lease_id]):
                    release_lease(self.clients.get(g), lease)
        self._orphans = keep

    def _advance(self, asked: _Asked, tokens: list[int], seed: bytes) -> bool:
        """Takes the answers of asked's round (all in). True when that sent another round: the
        sliding-window groups' window Lookups for the hit the full-attention groups agree on,
        or those again for a shorter hit. False when asked.result is the outcome: leases on
        every (rank, group) for the longest prefix all of them can restore, or None (a miss)."""
        cs, computed = self.s.chunk_size, asked.computed
        sliding = [g for g in self.clients if self._kind(g) == "sliding"]
        try:
            if asked.usable < 0:
                usable = self._take_full(asked, len(tokens))
            else:
                usable, agreed = self._take_windows(asked)
                if agreed:
                    asked.result = _Lookup(-(-usable // cs), usable, asked.leases, computed, dict(asked.first))
                    asked.leases = {}
                    return False
            if sliding and usable > computed:
                if asked.rounds < 4:
                    self._ask_windows(asked, tokens, usable, sliding, seed)
                    return True
                usable = computed         # still not agreed: a miss, never half restored
        except KvtierError:
            self._release(_Lookup(0, 0, asked.leases))
            asked.leases = {}
            raise
        if usable <= computed:
            self._release(_Lookup(0, 0, asked.leases))
            asked.leases, asked.result = {}, None
            return False
        asked.result = _Lookup(-(-usable // cs), usable, asked.leases, computed)
        asked.leases = {}
        return False

    def _take_full(self, asked: _Asked, n_tokens: int) -> int:
        """The full-attention groups' answers: the hit all of them restore on every rank (0
        unless every rank of every group got a lease)."""
        cs = self.s.chunk_size
        hit_tokens, hit_chunks = n_tokens, n_tokens // cs
        if asked.pending:
            tiers = (0, 0, 0)
            complete = True
            for i, g in enumerate(list(asked.pending)):
                _, ok = asked.pending.pop(g).wait(0)[0]
                complete = self._take_leases(g, ok, asked.leases) and complete
                hit_tokens = min(hit_tokens, ok.hit_tokens)
                hit_chunks = min(hit_chunks, ok.hit_chunks)
                if i == 0:
                    tiers = (ok.host_chunks, ok.disk_chunks, ok.valkey_chunks)
            if not complete:
                return 0
            self.interval.add("hit_chunks_host", tiers[0])
            self.interval.add("hit_chunks_disk", tiers[1])
            self.interval.add("hit_chunks_valkey", tiers[2])
        return min(hit_tokens, hit_chunks * cs, n_tokens - 1)

    def _take_leases(self, g: int, ok: Any, leases: dict[tuple[int, int], int]) -> bool:
        """Files group g's LookupOk leases under each rank; False unless every rank got one (no
        hit, or a daemon that ignored lookup_ranks: its one lease would serve rank 0 alone)."""
        ids = list(ok.lease_ids) if len(self.rank_keys) > 1 else ([ok.lease_id] if ok.lease_id else [])
        for idx, lease in zip(self.rank_keys, ids):
            if lease:
                leases[(idx, g)] = lease
        if len(ids) == len(self.rank_keys) or not ok.lease_id:
            return len(ids) == len(self.rank_keys)
        release_lease(self.clients.get(g), ok.lease_id)
        return False

    def _ask_windows(self, asked: _Asked, tokens: list[int], usable: int, sliding: list[int],
                     seed: bytes) -> None:
        """A round of window Lookups: per sliding-window group, the chunks holding tokens
        [usable - window + 1, usable) not computed locally."""
        cs = self.s.chunk_size
        if asked.keys is None:
            asked.keys = chunk_hashes(SLIDING_CHAIN_ROOT, tokens, cs)
        end = -(-usable // cs)
        asked.usable, asked.first, asked.rounds, asked.t0 = usable, {}, asked.rounds + 1, time.monotonic()
        for g in sliding:
            group = self.groups[g]
            assert group is not None
            f = max(max(0, usable - group.window + 1) // cs, asked.computed // cs)
            asked.first[g] = f
            body = proto.Lookup(address=address(None, asked.keys[f:end], seed), lease_ttl_ms=self.s.lease_ttl_ms)
            asked.pending[g] = self.clients[g].submit(body)

    def _take_windows(self, asked: _Asked) -> tuple[int, bool]:
        """A window round's answers: (usable, True) when every window is cached; else the
        round's leases are released and the hit shortens to the end of what is cached."""
        cs = self.s.chunk_size
        end = -(-asked.usable // cs)
        reach: dict[int, int] = {}
        for g in list(asked.pending):
            _, ok = asked.pending.pop(g).wait(0)[0]
            reach[g] = asked.first[g] + (ok.hit_chunks if self._take_leases(g, ok, asked.leases) else 0)
        if all(r >= end for r in reach.values()):
            return asked.usable, True
        for g in reach:
            for idx in self.rank_keys:
                release_lease(self.clients.get(g), asked.leases.pop((idx, g), 0))
        return min(asked.usable, min(r * cs for r in reach.values())), False

    def update_state_after_alloc(self, request: Any, blocks: Any, num_external_tokens: int) -> None:
        """Decides from num_external_tokens alone (base.py): blocks may be non-empty when it is 0,
        and an async request gets a second call with 0 once its load is done."""
        req_id = request.request_id
        if self._sliding:
            self._requests[req_id] = request
        lk = self._lookups.pop(req_id, None)
        if lk is None or num_external_tokens <= 0:
            self._release(lk)
            return
        lk.local_tokens = lk.usable_tokens - num_external_tokens
        self._add_load(req_id, lk, _groups(_block_ids(blocks), len(self.groups)))

    def build_connector_meta(self, scheduler_output: Any) -> KVTierConnectorMetadata:
        self._release_orphans()
        # Every step, so that the scheduler reconnects even when no request reaches a Lookup
        # (load off: a producer), and seeded requests' saves, which need the daemon's answer
        # on seeds, resume.
        self._dialled()
        meta = KVTierConnectorMetadata()
        meta.loads, self._to_load = self._to_load, []
        self._loading.update(ld.req_id for ld in meta.loads)
        for lk in self._lookups.values():  # looked up, not allocated: the next call looks up again
            self._release(lk)
        self._lookups.clear()
        meta.saves, self._saves = self._saves, []
        if self._sliding and self.s.save and self.health.ready():
            meta.saves.extend(self._step_saves(scheduler_output))
        preempted = set(getattr(scheduler_output, "preempted_req_ids", None) or ())
        meta.preempted = preempted
        for req_id in preempted:
            # Its blocks are freed and it is recomputed from scratch: the blocks of its load are
            # no longer its blocks (chunks known cached stay known, so its save still skips them).
            for g in range(len(self.groups)):
                self._load_blocks.pop((req_id, g), None)
        return meta

    def _step_saves(self, so: Any) -> list[SaveSpec]:
        """Sliding-window chunks that this step completes, stored after its forward."""
        n = len(self.groups)
        progress: list[tuple[str, int]] = []
        for nr in getattr(so, "scheduled_new_reqs", None) or ():
            self._tables[nr.req_id] = _groups(nr.block_ids, n)
            progress.append((nr.req_id, nr.num_computed_tokens))
        cached = getattr(so, "scheduled_cached_reqs", None)
        if cached is not None:
            resumed = set(getattr(cached, "resumed_req_ids", None) or ())
            for i, req_id in enumerate(cached.req_ids):
                new = cached.new_block_ids[i] if i < len(cached.new_block_ids) else None
                if req_id in resumed or req_id not in self._tables:
                    self._tables[req_id] = _groups(new, n)   # resumed: its whole table
                elif new is not None:
                    for t, add in zip(self._tables[req_id], _groups(new, n)):
                        t.extend(add)
                progress.append((req_id, cached.num_computed_tokens[i]))
        cs, B = self.s.chunk_size, self.s.blocks_per_chunk
        out: list[SaveSpec] = []
        for req_id, computed in progress:
            req = self._requests.get(req_id)
            if req is None or self._bypass_reason(req):
                continue
            if request_seed(req)[0] and self._daemon_seeds() is not True:
                continue                  # not known to honour the seed: a salted save would be shared
            tokens = list(getattr(req, "all_token_ids", None) or req.prompt_token_ids or [])
            end = min(computed + int(so.num_scheduled_tokens.get(req_id, 0)), len(tokens)) // cs
            nxt = self._next_chunk.setdefault(req_id, {})
            keys: Optional[list[bytes]] = None
            for g in self._sliding:
                group = self.groups[g]
                assert group is not None
                table = self._tables[req_id][g]
                for c in range(nxt.get(g, 0), min(end, len(table) // B)):
                    if not _window_resident(table, c, cs, self.s.block_size, group.window):
                        continue
                    if keys is None:
                        keys = chunk_hashes(SLIDING_CHAIN_ROOT, tokens[:end * cs], cs)
                    out.append(SaveSpec(req_id, [], table[c * B:(c + 1) * B], 0, group=g, keys=[keys[c]],
                                        seed=request_seed(req)[0], step=True))
                nxt[g] = max(nxt.get(g, 0), end)
        return out

    def update_connector_output(self, connector_output: Any) -> None:
        """Blocks whose load failed (KVConnectorOutput.invalid_block_ids): vLLM recomputes them,
        and request_finished must then save those chunks again instead of skipping them as
        already cached (a chunk that failed verification was dropped by the daemon)."""
        invalid = set(getattr(connector_output, "invalid_block_ids", None) or ())
        B = self.s.blocks_per_chunk
        for (req_id, _g), (first, ids) in list(self._load_blocks.items()) if invalid else ():
            bad = [j for j, b in enumerate(ids) if b != NO_BLOCK and b in invalid]
            if bad:
                self._loaded_chunks[req_id] = min(self._loaded_chunks.get(req_id, 0), first + bad[0] // B)
                self._load_failed.add(req_id)
        self._loading.difference_update(getattr(connector_output, "finished_recving", None) or ())

    def request_finished(self, request: Any, block_ids: Any) -> tuple[bool, Optional[dict[str, Any]]]:
        """vLLM without the hybrid allocator: the one group's block ids (list, or a 1-tuple)."""
        if block_ids and isinstance(block_ids[0], (list, tuple)):
            return self.request_finished_all_groups(request, tuple(block_ids))
        return self.request_finished_all_groups(request, (list(block_ids or []),))

    def request_finished_all_groups(self, request: Any,
                                    block_ids: tuple[list[int], ...]) -> tuple[bool, Optional[dict[str, Any]]]:
        """SupportsHMA: one SaveSpec per KV cache group for the request's full chunks."""
        req_id = request.request_id
        self._release(self._lookups.pop(req_id, None))
        self._drop_asked(req_id)
        loaded = self._loaded_chunks.pop(req_id, 0)
        for g in range(len(self.groups)):
            self._load_blocks.pop((req_id, g), None)
        self._requests.pop(req_id, None)
        self._tables.pop(req_id, None)
        next_chunk = self._next_chunk.pop(req_id, {})
        self._load_failed.discard(req_id)
        self._bypass_counted.discard(req_id)
        if req_id in self._loading:   # aborted while loading: nothing computed to save
            self._loading.discard(req_id)
            self._to_load = [ld for ld in self._to_load if ld.req_id != req_id]
            return False, None
        if not self.s.save or not self.health.ready() or self._bypass_reason(request):
            return False, None
        seed, _ = request_seed(request)
        if seed and not self._daemon_seeds():
            return False, None            # not known to honour the seed: a salted save would be shared
        tables = _groups(block_ids, len(self.groups))
        tokens = list(getattr(request, "all_token_ids", None) or request.prompt_token_ids or [])
        computed = min(int(getattr(request, "num_computed_tokens", len(tokens))), len(tokens))
        publishable = getattr(request, "num_publishable_block_hashes", None)
        if publishable is not None:
            # vLLM: blocks past this (e.g. KV of speculative tokens not yet materialized) must
            # not be published by hash; kvtier's chunks are content-addressed the same way.
            computed = min(computed, int(publishable) * self.s.block_size)
        cs, B = self.s.chunk_size, self.s.blocks_per_chunk
        n_chunks = min([computed // cs] + [len(t) // B for t in tables])
        if n_chunks <= 0:
            return False, None
        saves: list[SaveSpec] = []
        for g, table in enumerate(tables):
            if self._kind(g) == "sliding":
                # Chunks not stored during the steps whose window is still resident (vLLM nulls
                # blocks that fell out of the window; block 0 is its null block).
                group = self.groups[g]
                assert group is not None
                todo = [c for c in range(next_chunk.get(g, 0), n_chunks)
                        if _window_resident(table, c, cs, self.s.block_size, group.window)]
                if todo:
                    keys = chunk_hashes(SLIDING_CHAIN_ROOT, tokens[:n_chunks * cs], cs)
                    ids = [b for c in todo for b in table[c * B:(c + 1) * B]]
                    saves.append(SaveSpec(req_id, [], ids, 0, group=g, keys=[keys[c] for c in todo], seed=seed))
            elif n_chunks > loaded:
                saves.append(SaveSpec(req_id, tokens[:n_chunks * cs], table[:n_chunks * B],
                                      skip_chunks=loaded, group=g, seed=seed))
        if not saves:
            return False, None
        self._saves.extend(saves)
        return True, None

    def _bypass_reason(self, request: Any) -> Optional[str]:
        if self.s.unsupported_groups:
            return "kv_cache_group:" + self.s.unsupported_groups[0].spec_name
        seed, why = request_seed(request)
        if why is not None:
            return why
        # (daemon down, or not connected yet: not a bypass, the request is a miss like every
        # other until it is back)
        if seed and self.health.ready() and self._daemon_seeds() is False:
            return "daemon_without_seed"
        return None

    def _report_bypass(self, reason: str) -> None:
        """The same count in the daemon's stats, for operators who do not read vLLM's: best
        effort, never waited for (a daemon that is down just misses the count)."""
        client = next(iter(self.clients.values()))
        if not self.health.ready() or not client.connected:
            return                        # never a dial inside the step (_dialled does that)
        try:
            client.report_bypass(reason)
        except KvtierError:
            pass

    def _daemon_seeds(self) -> Optional[bool]:
        """Whether the daemon honours ChunkAddress.seed (HelloOk.address_seed); an older one would
        ignore it and share a salted request's chunks with everyone. None while a client is not
        connected: never a dial here (the step loop), _dialled connects off it."""
        if not all(c.connected for c in self.clients.values()):
            return None
        return all(bool(getattr(c.hello_ok, "address_seed", False)) for c in self.clients.values())

    def take_stats(self) -> Optional[KVTierConnectorStats]:
        if self.interval.is_empty():
            return None
        return self.interval.clone_and_reset()

    def shutdown(self) -> None:
        for lk in self._lookups.values():
            self._release(lk)
        for c in self.clients.values():
            c.close()

    # -- helpers --------------------------------------------------------------

    def _add_load(self, req_id: str, lk: _Lookup, tables: list[list[int]]) -> None:
        cs, bs, B = self.s.chunk_size, self.s.block_size, self.s.blocks_per_chunk
        local_blocks = lk.local_tokens // bs
        specs: list[LoadSpec] = []
        for g, table in enumerate(tables):
            lease_base = lk.base.get(g, 0)
            first = max(lk.local_tokens // cs, lease_base)
            num = lk.hit_chunks - first
            if num <= 0:
                continue
            ids: list[int] = []
            for b in range(first * B, (first + num) * B):
                bad = b < local_blocks or b >= len(table) or (self._kind(g) == "sliding" and table[b] == NULL_BLOCK)
                ids.append(NO_BLOCK if bad else table[b])
            leases = {idx: lease for (idx, gg), lease in lk.leases.items() if gg == g}
            specs.append(LoadSpec(req_id, leases, first - lease_base, num, ids, group=g))
            self._load_blocks[(req_id, g)] = (first, ids)
        if not specs:
            self._release(lk)
            return
        self._to_load.extend(specs)
        self._loaded_chunks[req_id] = lk.hit_chunks
        if self._sliding:   # loaded from kvtier: nothing to store again up to the hit
            self._next_chunk[req_id] = {g: lk.hit_chunks for g in self._sliding}

    def _release(self, lk: Optional[_Lookup]) -> None:
        if lk is None:
            return
        for (_idx, g), lease in lk.leases.items():
            release_lease(self.clients.get(g), lease)


NULL_BLOCK = 0   # vLLM's null block (BlockPool reserves block 0): never written, never stored


def _window_resident(table: list[int], c: int, cs: int, bs: int, window: int) -> bool:
    """Whether the blocks holding what any later hit reads of sliding-window chunk c are
    resident: tokens [(c+1)*cs - window, (c+1)*cs) (a hit ends at or after the chunk's end,
    at worst one token before it, and reads the window before its end)."""
    lo = max(c * cs, (c + 1) * cs - window) // bs
    hi = (c + 1) * cs // bs
    return hi <= len(table) and all(b != NULL_BLOCK for b in table[lo:hi])


def _groups(block_ids: Any, n: int) -> list[list[int]]:
    """Block ids per KV cache group from vLLM's tuple-of-lists (or a plain list: one group)."""
    if block_ids is None:
        return [[] for _ in range(n)]
    if len(block_ids) and isinstance(block_ids[0], (list, tuple)):
        out = [list(t) for t in block_ids]
    elif len(block_ids) == 0:
        out = []
    else:
        out = [list(block_ids)]
    return out + [[] for _ in range(n - len(out))]


def _block_ids(blocks: Any) -> Any:
    """Block ids of vLLM's KVCacheBlocks (get_block_ids()), or a plain list/tuple form."""
    get = getattr(blocks, "get_block_ids", None)
    return get() if get is not None else blocks
