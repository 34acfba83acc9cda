"""The few torch storage calls kvtier needs, across torch 1.13 (Debian) and 2.x.

torch 1.13 has no Tensor.untyped_storage() and cannot set_() a tensor onto an
UntypedStorage; 2.x deprecates TypedStorage. Everything here works on both.
"""
from __future__ import annotations

from typing import Any


def untyped_storage(t: Any) -> Any:
    """The untyped storage under `t` (the whole allocation, not just the view)."""
    fn = getattr(t, "untyped_storage", None)
    return fn() if fn is not None else t.storage().untyped()


def storage_nbytes(storage: Any) -> int:
    n = storage.nbytes
    return int(n() if callable(n) else n)


def byte_view(t: Any) -> Any:
    """A flat uint8 tensor over the whole storage of `t` (same device, shares memory)."""
    import torch

    storage = untyped_storage(t)
    n = storage_nbytes(storage)
    out = torch.empty(0, dtype=torch.uint8, device=t.device)
    try:
        return out.set_(storage, 0, (n,), (1,))
    except TypeError:
        typed = torch.TypedStorage(wrap_storage=storage, dtype=torch.uint8)
        return out.set_(typed, 0, (n,), (1,))
