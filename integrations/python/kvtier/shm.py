"""CPU tensors in POSIX shared memory, so kvtierd can map a worker's KV cache.

The daemon opens a worker's KV memory by path (the CPU stand-in for a CUDA
IPC handle). torch CPU tensors normally live in anonymous memory the daemon
cannot see, so CPU KV caches that kvtier should move must be allocated here:
a file under /dev/shm, sized with ftruncate, mapped with torch.from_file
(shared=True, so writes from either side are visible to the other). The
registry maps each allocation's base address to its path so that
kvtier.layout can turn tensors (or views into them) back into regions.
"""
from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from .torch_compat import untyped_storage

_registry: dict[int, "ShmRegion"] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class ShmRegion:
    path: str
    size_bytes: int


def lookup(base_ptr: int) -> ShmRegion | None:
    """The shm file whose mapping starts at `base_ptr`, if kvtier allocated it."""
    with _lock:
        return _registry.get(base_ptr)


def attach(path: str, shape: tuple[int, ...], dtype: Any) -> Any:
    """Maps a /dev/shm file another process allocated (shared: writes are seen by both) and
    registers it, so kvtier.layout can name it to the daemon from this process too."""
    import torch

    numel = 1
    for s in shape:
        numel *= int(s)
    itemsize = torch.empty((), dtype=dtype).element_size()
    flat = torch.from_file(path, shared=True, size=max(numel, 1), dtype=dtype)
    with _lock:
        _registry[untyped_storage(flat).data_ptr()] = ShmRegion(path, max(numel * itemsize, 1))
    return flat[:numel].view(*shape)


def path_of(tensor: Any) -> str:
    """The shm file behind a tensor this process allocated or attached."""
    found = lookup(untyped_storage(tensor).data_ptr())
    if found is None:
        raise ValueError("tensor is not in kvtier shared memory")
    return found.path


class ShmAllocator:
    """Allocates shm-backed CPU tensors; `close()` unlinks every file it made."""

    def __init__(self, directory: str = "/dev/shm", prefix: str = "kvtier-kv") -> None:
        self.directory = directory
        self.prefix = prefix
        self._paths: list[str] = []
        self._keep: list[Any] = []

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """A zero-filled tensor of `shape`/`dtype` backed by a fresh /dev/shm file."""
        import torch

        numel = 1
        for s in shape:
            numel *= int(s)
        itemsize = torch.empty((), dtype=dtype).element_size()
        nbytes = max(numel * itemsize, 1)
        path = os.path.join(self.directory, f"{self.prefix}-{os.getpid()}-{uuid.uuid4().hex[:12]}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, nbytes)
        finally:
            os.close(fd)
        flat = torch.from_file(path, shared=True, size=max(numel, 1), dtype=dtype)
        tensor = flat[:numel].view(*shape) if numel else flat[:0].view(*shape)
        with _lock:
            _registry[untyped_storage(flat).data_ptr()] = ShmRegion(path, nbytes)
        self._paths.append(path)
        self._keep.append(flat)
        return tensor

    def close(self) -> None:
        """Unlinks the files (mappings stay valid until the tensors are freed)."""
        with _lock:
            for flat in self._keep:
                _registry.pop(untyped_storage(flat).data_ptr(), None)
        for path in self._paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self._paths.clear()
        self._keep.clear()

    def __enter__(self) -> "ShmAllocator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
