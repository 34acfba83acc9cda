"""KVTierConnector against vLLM's connector interface, as read in vllm-project/vllm at commit
003df2961dd8830c317a61f9745ccd557da9fa06 (vllm/distributed/kv_transfer/kv_connector/v1/base.py,
factory.py; see docs/integrations.md). vLLM is not installed here, so the upstream signatures
are pinned below: every abstract method of KVConnectorBase_V1 and SupportsHMA, and every
default kvtier overrides, must exist with parameters vLLM's calls bind to."""
from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest

from kvtier.vllm import KVTierConnector
from kvtier.vllm.compat import Role, SupportsHMA

# name -> (parameters after self/cls as upstream declares them, kind)
ABSTRACT = {
    "start_load_kv": (["forward_context", "**kwargs"], "method"),
    "wait_for_layer_load": (["layer_name"], "method"),
    "save_kv_layer": (["layer_name", "kv_layer", "attn_metadata", "**kwargs"], "method"),
    "wait_for_save": ([], "method"),
    "get_num_new_matched_tokens": (["request", "num_computed_tokens"], "method"),
    "update_state_after_alloc": (["request", "blocks", "num_external_tokens"], "method"),
    "build_connector_meta": (["scheduler_output"], "method"),
    "request_finished_all_groups": (["request", "block_ids"], "method"),   # SupportsHMA
}
OVERRIDDEN = {
    "requires_kv_delivery": ([], "property"),
    "prefer_cross_layer_blocks": ([], "property"),
    "register_kv_caches": (["kv_caches"], "method"),
    "register_cross_layers_kv_cache": (["kv_cache", "attn_backend"], "method"),
    "handle_preemptions": (["kv_connector_metadata"], "method"),
    "get_finished": (["finished_req_ids"], "method"),
    "get_block_ids_with_load_errors": ([], "method"),
    "shutdown": ([], "method"),
    "get_kv_connector_stats": ([], "method"),
    "build_kv_connector_stats": (["data"], "classmethod"),
    "build_prom_metrics": (["vllm_config", "metric_types", "labelnames", "per_engine_labelvalues"], "classmethod"),
    "update_connector_output": (["connector_output"], "method"),
    "request_finished": (["request", "block_ids"], "method"),
    # from the base class (the stand-in here, vLLM's own with vLLM installed)
    "bind_connector_metadata": (["connector_metadata"], "method"),
    "clear_connector_metadata": ([], "method"),
    "has_connector_metadata": ([], "method"),
}


@pytest.mark.parametrize("name", sorted({**ABSTRACT, **OVERRIDDEN}))
def test_method_exists_with_the_upstream_parameters(name):
    params, kind = {**ABSTRACT, **OVERRIDDEN}[name]
    raw = inspect.getattr_static(KVTierConnector, name)
    if kind == "property":
        assert isinstance(raw, property), f"{name} must be a property, as in base.py"
        return
    if kind == "classmethod":
        assert isinstance(raw, classmethod), f"{name} must be a classmethod, as in base.py"
    sig = inspect.signature(getattr(KVTierConnector, name))
    ours = [p for p in sig.parameters.values() if p.name not in ("self", "cls")]
    named = [p.name for p in ours if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    want_named = [p for p in params if not p.startswith("**")]
    assert named[:len(want_named)] == want_named, f"{name}{sig}: expected parameters {params}"
    assert all(p.default is not inspect.Parameter.empty for p in ours[len(want_named):]
               if p.kind is p.POSITIONAL_OR_KEYWORD), f"{name}{sig}: extra parameters need defaults"
    if any(p.startswith("**") for p in params):
        assert any(p.kind is p.VAR_KEYWORD for p in ours), f"{name}{sig}: vLLM passes **kwargs"


def test_is_supports_hma_so_the_factory_accepts_it_with_the_hybrid_allocator():
    assert issubclass(KVTierConnector, SupportsHMA)


def test_the_factory_constructor_call(tmp_path):
    """factory.py: connector_cls(config, role, kv_cache_config), positionally, once per role."""
    from vllm_sim import vllm_config

    cfg = vllm_config(str(tmp_path / "absent.sock"))
    for role in (Role.SCHEDULER, Role.WORKER):
        c = KVTierConnector(cfg, role, SimpleNamespace(num_blocks=16))
        try:
            assert c.role is role
        finally:
            c.shutdown()
