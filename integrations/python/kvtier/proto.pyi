"""Type stubs of kvtier.proto (generated from proto/kvtier.proto, do not edit).

Written by integrations/python/tools/gen_descriptor.py from the same descriptor
as kvtier/_descriptor.py. kvtier.proto builds these classes at import time;
this file is what type checkers see of them.
"""
from collections.abc import Iterable
from typing import Any, Optional

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer, RepeatedScalarFieldContainer
from google.protobuf.message import Message

PACKAGE: str
PROTOCOL_VERSION: int
MESSAGE_NAMES: list[str]
BODY_FIELDS: dict[str, str]

def envelope(request_id: int, body: Message) -> Envelope: ...
def body_of(env: Envelope) -> tuple[str, Any]: ...

class Envelope(Message):
    id: int
    @property
    def error(self) -> Error: ...
    @property
    def hello(self) -> Hello: ...
    @property
    def hello_ok(self) -> HelloOk: ...
    @property
    def ping(self) -> Ping: ...
    @property
    def pong(self) -> Pong: ...
    @property
    def lookup(self) -> Lookup: ...
    @property
    def lookup_ok(self) -> LookupOk: ...
    @property
    def release_lease(self) -> ReleaseLease: ...
    @property
    def ack(self) -> Ack: ...
    @property
    def put(self) -> Put: ...
    @property
    def get(self) -> Get: ...
    @property
    def get_ok(self) -> GetOk: ...
    @property
    def exists(self) -> Exists: ...
    @property
    def exists_ok(self) -> ExistsOk: ...
    @property
    def put_ok(self) -> PutOk: ...
    @property
    def store(self) -> Store: ...
    @property
    def store_copied(self) -> StoreCopied: ...
    @property
    def store_committed(self) -> StoreCommitted: ...
    @property
    def retrieve(self) -> Retrieve: ...
    @property
    def retrieve_done(self) -> RetrieveDone: ...
    @property
    def invalidate(self) -> Invalidate: ...
    @property
    def invalidate_ok(self) -> InvalidateOk: ...
    @property
    def stats(self) -> Stats: ...
    @property
    def stats_ok(self) -> StatsOk: ...
    @property
    def register_kv(self) -> RegisterKv: ...
    @property
    def register_kv_ok(self) -> RegisterKvOk: ...
    @property
    def unregister(self) -> Unregister: ...
    @property
    def list_namespaces(self) -> ListNamespaces: ...
    @property
    def list_namespaces_ok(self) -> ListNamespacesOk: ...
    @property
    def inspect(self) -> Inspect: ...
    @property
    def inspect_ok(self) -> InspectOk: ...
    @property
    def clear(self) -> Clear: ...
    @property
    def clear_ok(self) -> ClearOk: ...
    @property
    def pin(self) -> Pin: ...
    @property
    def pin_ok(self) -> PinOk: ...
    @property
    def bypass(self) -> Bypass: ...
    def __init__(
        self,
        *,
        id: int = ...,
        error: Optional[Error] = ...,
        hello: Optional[Hello] = ...,
        hello_ok: Optional[HelloOk] = ...,
        ping: Optional[Ping] = ...,
        pong: Optional[Pong] = ...,
        lookup: Optional[Lookup] = ...,
        lookup_ok: Optional[LookupOk] = ...,
        release_lease: Optional[ReleaseLease] = ...,
        ack: Optional[Ack] = ...,
        put: Optional[Put] = ...,
        get: Optional[Get] = ...,
        get_ok: Optional[GetOk] = ...,
        exists: Optional[Exists] = ...,
        exists_ok: Optional[ExistsOk] = ...,
        put_ok: Optional[PutOk] = ...,
        store: Optional[Store] = ...,
        store_copied: Optional[StoreCopied] = ...,
        store_committed: Optional[StoreCommitted] = ...,
        retrieve: Optional[Retrieve] = ...,
        retrieve_done: Optional[RetrieveDone] = ...,
        invalidate: Optional[Invalidate] = ...,
        invalidate_ok: Optional[InvalidateOk] = ...,
        stats: Optional[Stats] = ...,
        stats_ok: Optional[StatsOk] = ...,
        register_kv: Optional[RegisterKv] = ...,
        register_kv_ok: Optional[RegisterKvOk] = ...,
        unregister: Optional[Unregister] = ...,
        list_namespaces: Optional[ListNamespaces] = ...,
        list_namespaces_ok: Optional[ListNamespacesOk] = ...,
        inspect: Optional[Inspect] = ...,
        inspect_ok: Optional[InspectOk] = ...,
        clear: Optional[Clear] = ...,
        clear_ok: Optional[ClearOk] = ...,
        pin: Optional[Pin] = ...,
        pin_ok: Optional[PinOk] = ...,
        bypass: Optional[Bypass] = ...,
    ) -> None: ...

class Error(Message):
    code: str
    message: str
    def __init__(
        self,
        *,
        code: str = ...,
        message: str = ...,
    ) -> None: ...

class NamespaceFingerprint(Message):
    model: str
    dtype: str
    kv_layout: str
    chunk_size: int
    block_size: int
    tp_rank: int
    tp_size: int
    pp_rank: int
    pp_size: int
    mla: bool
    cache_salt: str
    def __init__(
        self,
        *,
        model: str = ...,
        dtype: str = ...,
        kv_layout: str = ...,
        chunk_size: int = ...,
        block_size: int = ...,
        tp_rank: int = ...,
        tp_size: int = ...,
        pp_rank: int = ...,
        pp_size: int = ...,
        mla: bool = ...,
        cache_salt: str = ...,
    ) -> None: ...

class Hello(Message):
    protocol_version: int
    @property
    def fingerprint(self) -> NamespaceFingerprint: ...
    client_kind: str
    @property
    def lookup_ranks(self) -> RepeatedCompositeFieldContainer[Rank]: ...
    def __init__(
        self,
        *,
        protocol_version: int = ...,
        fingerprint: Optional[NamespaceFingerprint] = ...,
        client_kind: str = ...,
        lookup_ranks: Optional[Iterable[Rank]] = ...,
    ) -> None: ...

class Rank(Message):
    tp_rank: int
    pp_rank: int
    def __init__(
        self,
        *,
        tp_rank: int = ...,
        pp_rank: int = ...,
    ) -> None: ...

class HelloOk(Message):
    protocol_version: int
    namespace_id: str
    chunk_size: int
    max_frame_bytes: int
    max_chunk_bytes: int
    save_unfull_chunk: bool
    server_version: str
    address_seed: bool
    @property
    def rank_namespace_ids(self) -> RepeatedScalarFieldContainer[str]: ...
    def __init__(
        self,
        *,
        protocol_version: int = ...,
        namespace_id: str = ...,
        chunk_size: int = ...,
        max_frame_bytes: int = ...,
        max_chunk_bytes: int = ...,
        save_unfull_chunk: bool = ...,
        server_version: str = ...,
        address_seed: bool = ...,
        rank_namespace_ids: Optional[Iterable[str]] = ...,
    ) -> None: ...

class Ping(Message):
    def __init__(self) -> None: ...

class Pong(Message):
    def __init__(self) -> None: ...

class Ack(Message):
    def __init__(self) -> None: ...

class ChunkAddress(Message):
    tokens: bytes
    @property
    def keys(self) -> RepeatedScalarFieldContainer[bytes]: ...
    seed: bytes
    def __init__(
        self,
        *,
        tokens: bytes = ...,
        keys: Optional[Iterable[bytes]] = ...,
        seed: bytes = ...,
    ) -> None: ...

class Lookup(Message):
    @property
    def address(self) -> ChunkAddress: ...
    lease_ttl_ms: int
    no_lease: bool
    def __init__(
        self,
        *,
        address: Optional[ChunkAddress] = ...,
        lease_ttl_ms: int = ...,
        no_lease: bool = ...,
    ) -> None: ...

class LookupOk(Message):
    hit_tokens: int
    hit_chunks: int
    host_chunks: int
    valkey_chunks: int
    lease_id: int
    disk_chunks: int
    @property
    def lease_ids(self) -> RepeatedScalarFieldContainer[int]: ...
    def __init__(
        self,
        *,
        hit_tokens: int = ...,
        hit_chunks: int = ...,
        host_chunks: int = ...,
        valkey_chunks: int = ...,
        lease_id: int = ...,
        disk_chunks: int = ...,
        lease_ids: Optional[Iterable[int]] = ...,
    ) -> None: ...

class ReleaseLease(Message):
    lease_id: int
    def __init__(
        self,
        *,
        lease_id: int = ...,
    ) -> None: ...

class Put(Message):
    key: bytes
    value: bytes
    want_put_ok: bool
    def __init__(
        self,
        *,
        key: bytes = ...,
        value: bytes = ...,
        want_put_ok: bool = ...,
    ) -> None: ...

class PutOk(Message):
    stored: bool
    def __init__(
        self,
        *,
        stored: bool = ...,
    ) -> None: ...

class Get(Message):
    key: bytes
    def __init__(
        self,
        *,
        key: bytes = ...,
    ) -> None: ...

class GetOk(Message):
    found: bool
    value: bytes
    def __init__(
        self,
        *,
        found: bool = ...,
        value: bytes = ...,
    ) -> None: ...

class Exists(Message):
    @property
    def keys(self) -> RepeatedScalarFieldContainer[bytes]: ...
    def __init__(
        self,
        *,
        keys: Optional[Iterable[bytes]] = ...,
    ) -> None: ...

class ExistsOk(Message):
    prefix_found: int
    @property
    def found(self) -> RepeatedScalarFieldContainer[bool]: ...
    def __init__(
        self,
        *,
        prefix_found: int = ...,
        found: Optional[Iterable[bool]] = ...,
    ) -> None: ...

class Store(Message):
    @property
    def address(self) -> ChunkAddress: ...
    @property
    def chunks(self) -> RepeatedScalarFieldContainer[bytes]: ...
    block_ids: bytes
    skip_chunks: int
    def __init__(
        self,
        *,
        address: Optional[ChunkAddress] = ...,
        chunks: Optional[Iterable[bytes]] = ...,
        block_ids: bytes = ...,
        skip_chunks: int = ...,
    ) -> None: ...

class StoreCopied(Message):
    stored_chunks: int
    present_chunks: int
    skipped_chunks: int
    def __init__(
        self,
        *,
        stored_chunks: int = ...,
        present_chunks: int = ...,
        skipped_chunks: int = ...,
    ) -> None: ...

class StoreCommitted(Message):
    committed_chunks: int
    failed_chunks: int
    def __init__(
        self,
        *,
        committed_chunks: int = ...,
        failed_chunks: int = ...,
    ) -> None: ...

class Retrieve(Message):
    lease_id: int
    first_chunk: int
    num_chunks: int
    block_ids: bytes
    def __init__(
        self,
        *,
        lease_id: int = ...,
        first_chunk: int = ...,
        num_chunks: int = ...,
        block_ids: bytes = ...,
    ) -> None: ...

class RetrieveDone(Message):
    @property
    def chunks(self) -> RepeatedScalarFieldContainer[bytes]: ...
    failed_block_ids: bytes
    loaded_chunks: int
    failed_chunks: int
    def __init__(
        self,
        *,
        chunks: Optional[Iterable[bytes]] = ...,
        failed_block_ids: bytes = ...,
        loaded_chunks: int = ...,
        failed_chunks: int = ...,
    ) -> None: ...

class Invalidate(Message):
    @property
    def address(self) -> ChunkAddress: ...
    def __init__(
        self,
        *,
        address: Optional[ChunkAddress] = ...,
    ) -> None: ...

class InvalidateOk(Message):
    removed_chunks: int
    def __init__(
        self,
        *,
        removed_chunks: int = ...,
    ) -> None: ...

class Stats(Message):
    def __init__(self) -> None: ...

class StatsOk(Message):
    json: str
    def __init__(
        self,
        *,
        json: str = ...,
    ) -> None: ...

class KvRegion(Message):
    region_id: int
    size_bytes: int
    shm_path: str
    cuda_ipc_handle: bytes
    device_index: int
    def __init__(
        self,
        *,
        region_id: int = ...,
        size_bytes: int = ...,
        shm_path: str = ...,
        cuda_ipc_handle: bytes = ...,
        device_index: int = ...,
    ) -> None: ...

class KvPlane(Message):
    layer: int
    region_id: int
    offset: int
    block_stride: int
    block_bytes: int
    def __init__(
        self,
        *,
        layer: int = ...,
        region_id: int = ...,
        offset: int = ...,
        block_stride: int = ...,
        block_bytes: int = ...,
    ) -> None: ...

class RegisterKv(Message):
    @property
    def regions(self) -> RepeatedCompositeFieldContainer[KvRegion]: ...
    @property
    def planes(self) -> RepeatedCompositeFieldContainer[KvPlane]: ...
    num_blocks: int
    block_size: int
    def __init__(
        self,
        *,
        regions: Optional[Iterable[KvRegion]] = ...,
        planes: Optional[Iterable[KvPlane]] = ...,
        num_blocks: int = ...,
        block_size: int = ...,
    ) -> None: ...

class RegisterKvOk(Message):
    chunk_bytes: int
    backend: str
    def __init__(
        self,
        *,
        chunk_bytes: int = ...,
        backend: str = ...,
    ) -> None: ...

class Unregister(Message):
    def __init__(self) -> None: ...

class ListNamespaces(Message):
    namespace_id: str
    tier: str
    def __init__(
        self,
        *,
        namespace_id: str = ...,
        tier: str = ...,
    ) -> None: ...

class NamespaceUsage(Message):
    namespace_id: str
    host_chunks: int
    host_bytes: int
    valkey_chunks: int
    valkey_bytes: int
    pinned_chunks: int
    disk_chunks: int
    disk_bytes: int
    def __init__(
        self,
        *,
        namespace_id: str = ...,
        host_chunks: int = ...,
        host_bytes: int = ...,
        valkey_chunks: int = ...,
        valkey_bytes: int = ...,
        pinned_chunks: int = ...,
        disk_chunks: int = ...,
        disk_bytes: int = ...,
    ) -> None: ...

class ListNamespacesOk(Message):
    @property
    def namespaces(self) -> RepeatedCompositeFieldContainer[NamespaceUsage]: ...
    valkey_listed: bool
    def __init__(
        self,
        *,
        namespaces: Optional[Iterable[NamespaceUsage]] = ...,
        valkey_listed: bool = ...,
    ) -> None: ...

class Inspect(Message):
    namespace_id: str
    chunk_hash: str
    tokens: bytes
    def __init__(
        self,
        *,
        namespace_id: str = ...,
        chunk_hash: str = ...,
        tokens: bytes = ...,
    ) -> None: ...

class ChunkInfo(Message):
    namespace_id: str
    chunk_hash: str
    index: int
    in_host: bool
    host_bytes: int
    host_age_s: float
    pinned: bool
    pins: int
    in_valkey: bool
    valkey_bytes: int
    in_disk: bool
    disk_bytes: int
    def __init__(
        self,
        *,
        namespace_id: str = ...,
        chunk_hash: str = ...,
        index: int = ...,
        in_host: bool = ...,
        host_bytes: int = ...,
        host_age_s: float = ...,
        pinned: bool = ...,
        pins: int = ...,
        in_valkey: bool = ...,
        valkey_bytes: int = ...,
        in_disk: bool = ...,
        disk_bytes: int = ...,
    ) -> None: ...

class InspectOk(Message):
    @property
    def chunks(self) -> RepeatedCompositeFieldContainer[ChunkInfo]: ...
    def __init__(
        self,
        *,
        chunks: Optional[Iterable[ChunkInfo]] = ...,
    ) -> None: ...

class Clear(Message):
    namespace_id: str
    tier: str
    def __init__(
        self,
        *,
        namespace_id: str = ...,
        tier: str = ...,
    ) -> None: ...

class ClearOk(Message):
    host_chunks: int
    valkey_chunks: int
    valkey_skipped: bool
    disk_chunks: int
    def __init__(
        self,
        *,
        host_chunks: int = ...,
        valkey_chunks: int = ...,
        valkey_skipped: bool = ...,
        disk_chunks: int = ...,
    ) -> None: ...

class Pin(Message):
    @property
    def address(self) -> ChunkAddress: ...
    unpin: bool
    def __init__(
        self,
        *,
        address: Optional[ChunkAddress] = ...,
        unpin: bool = ...,
    ) -> None: ...

class PinOk(Message):
    chunks: int
    pinned_chunks: int
    already_chunks: int
    missing_chunks: int
    over_budget_chunks: int
    pinned_bytes: int
    budget_bytes: int
    def __init__(
        self,
        *,
        chunks: int = ...,
        pinned_chunks: int = ...,
        already_chunks: int = ...,
        missing_chunks: int = ...,
        over_budget_chunks: int = ...,
        pinned_bytes: int = ...,
        budget_bytes: int = ...,
    ) -> None: ...

class Bypass(Message):
    reason: str
    def __init__(
        self,
        *,
        reason: str = ...,
    ) -> None: ...
