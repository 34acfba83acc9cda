"""kvtier's connector stats in vLLM's Prometheus output, in vLLM's call order: the front-end's
PrometheusStatLogger loads the connector class as the factory does (kv_connector_module_path)
and calls build_prom_metrics once with prometheus_client's metric classes; after every step
the engine core's aggregated connector stats (every worker's, pickled across processes, plus
the scheduler's) reach observe(data, engine_idx). Two engines of one front-end (engine 0 stores,
engine 1 loads) run real requests against a real kvtierd; what is checked is the text a
Prometheus scrape gets."""
import importlib

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kvtier.shm import ShmAllocator
from vllm_sim import MiniEngine, Request

PREFIX = [(i * 7919 + 13) % 32000 for i in range(1000)]
MODEL = "test/llama"


@pytest.fixture
def alloc():
    with ShmAllocator() as a:
        yield a


def metric_types(registry):
    """vLLM's KVConnectorProm hands {Gauge: cls, Counter: cls, Histogram: cls}; these register
    into the test's own registry instead of prometheus_client's global one."""
    def bound(base):
        return type(base.__name__, (base,), {"__init__": lambda self, *a, **kw: base.__init__(self, *a, registry=registry, **kw)})
    return {t: bound(t) for t in (prometheus_client.Gauge, prometheus_client.Counter, prometheus_client.Histogram)}


def connector_class(config):
    """KVConnectorFactory.get_connector_class for a connector loaded by module path."""
    ktc = config.kv_transfer_config
    return getattr(importlib.import_module(ktc.kv_connector_module_path), ktc.kv_connector)


def scrape(registry):
    """{(sample name, frozenset(labels)): value} from the exposition text."""
    out = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples, name, engine, **labels):
    return samples.get((name, frozenset({"model_name": MODEL, "engine": engine, **labels}.items())))


def test_connector_stats_reach_vllms_prometheus_output(daemon, alloc):
    registry = CollectorRegistry()
    a = b = None
    try:
        a = MiniEngine(daemon.socket, alloc, "A")
        cls = connector_class(a.config)
        prom = cls.build_prom_metrics(a.config, metric_types(registry), ["model_name", "engine"],
                                      {0: [MODEL, "0"], 1: [MODEL, "1"]})
        assert prom is not None
        a.stats_sink = lambda data: prom.observe(data, 0)
        b = MiniEngine(daemon.socket, alloc, "B", stats_sink=lambda data: prom.observe(data, 1))

        before = scrape(registry)
        assert value(before, "vllm:kvtier_stored_chunks_total", "0") == 0, "series exist from the first scrape"

        a.run(Request("r1", PREFIX + [4] * 20))                # 1020 tokens: 3 full chunks saved
        s2 = b.run(Request("r2", PREFIX + [3] * 20))           # the same 768-token prefix, loaded
        assert s2.external_tokens == 768
        embeds = Request("r3", PREFIX + [5] * 20)
        embeds.prompt_embeds = object()                        # KV kvtier cannot key: bypassed
        assert b.run(embeds).external_tokens == 0
        b.idle_step()                                          # the scheduler's last figures go out

        got = scrape(registry)
        assert value(got, "vllm:kvtier_stored_chunks_total", "0") == 3
        assert value(got, "vllm:kvtier_saves_total", "0") == 1
        assert value(got, "vllm:kvtier_save_time_seconds_count", "0") == 1
        assert value(got, "vllm:kvtier_save_time_seconds_sum", "0") > 0
        assert value(got, "vllm:kvtier_hit_tokens_total", "0") == 0, "engine 0 found nothing"

        assert value(got, "vllm:kvtier_hit_tokens_total", "1") == 768
        assert value(got, "vllm:kvtier_hit_chunks_total", "1", tier="host") == 3
        assert value(got, "vllm:kvtier_loaded_chunks_total", "1") == 3
        assert value(got, "vllm:kvtier_loads_total", "1") == 1
        assert value(got, "vllm:kvtier_load_time_seconds_count", "1") == 1
        assert value(got, "vllm:kvtier_load_time_seconds_sum", "1") > 0
        assert value(got, "vllm:kvtier_failed_load_blocks_total", "1") == 0
        assert value(got, "vllm:kvtier_bypassed_requests_total", "1", reason="prompt_embeds") == 1
        assert value(got, "vllm:kvtier_lookups_total", "1") == 1, "the bypassed request made no Lookup"
        assert value(got, "vllm:kvtier_stored_chunks_total", "1") == 0, "r2's chunks were already stored"
    finally:
        for e in (a, b):
            if e is not None:
                e.close()


def test_the_log_line_and_prometheus_see_the_same_step(daemon, alloc):
    """vLLM feeds one data dict to both loggers: build_kv_connector_stats(data).reduce() for the
    log line, observe(data) for Prometheus; duration samples stay out of the log line."""
    registry = CollectorRegistry()
    seen = []
    a = MiniEngine(daemon.socket, alloc, "A", stats_sink=seen.append)
    try:
        a.run(Request("r1", PREFIX + [4] * 20))
    finally:
        a.close()
    cls = connector_class(a.config)
    prom = cls.build_prom_metrics(a.config, metric_types(registry), ["model_name", "engine"], {0: [MODEL, "0"]})
    logged = None
    for data in seen:
        prom.observe(data, 0)
        st = cls.build_kv_connector_stats(data)
        logged = st if logged is None else logged.aggregate(st)
    line = logged.reduce()
    assert all(isinstance(v, (int, float)) for v in line.values())
    got = scrape(registry)
    assert line["stored_chunks"] == value(got, "vllm:kvtier_stored_chunks_total", "0") == 3
    assert line["saves"] == value(got, "vllm:kvtier_save_time_seconds_count", "0") == 1
    assert line["save_time_s"] == pytest.approx(value(got, "vllm:kvtier_save_time_seconds_sum", "0"), abs=1e-6)
