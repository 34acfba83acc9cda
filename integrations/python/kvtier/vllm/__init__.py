"""vLLM V1 integration: `kv_connector_module_path: kvtier.vllm`, `kv_connector: KVTierConnector`.

Imports without vLLM (the base classes fall back to stand-ins, see compat.py).
"""
from .compat import HAVE_VLLM
from .connector import KVTierConnector
from .metadata import KVTierConnectorMetadata, LoadSpec, SaveSpec

__all__ = ["KVTierConnector", "KVTierConnectorMetadata", "LoadSpec", "SaveSpec", "HAVE_VLLM"]
