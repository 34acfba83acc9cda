"""SGLang HiCache storage backend (L3) backed by kvtierd, opaque-key mode.

    --enable-hierarchical-cache --hicache-storage-backend dynamic
    --hicache-storage-backend-extra-config '{"backend_name":"kvtier","module_path":"kvtier.sglang",
        "class_name":"KVTierHiCacheStorage","kvtier_socket":"/tmp/kvtier.sock"}'
"""
from .storage import KVTierHiCacheStorage

__all__ = ["KVTierHiCacheStorage"]
