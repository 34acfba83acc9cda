"""Reference engine: a small real transformer that drives KVTierConnector the way
vLLM does, to check that loaded KV gives the same logits as recompute.
A test instrument, not an inference engine. See docs/refengine.md."""
from .engine import RefEngine, Request
from .kvcache import LAYOUTS, PagedKVCache
from .model import ModelConfig, Transformer

__all__ = ["RefEngine", "Request", "LAYOUTS", "PagedKVCache", "ModelConfig", "Transformer"]
