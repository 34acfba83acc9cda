"""`kvtier bench throughput --tier host --source sglang`'s Python side.

Run by bench/throughput-sglang.ts with /usr/bin/python3 against the daemon it
started: argv = socket path, pages per batch, rounds (after one warm-up round),
the daemon's pid (its CPU time is read from /proc). A Llama-3.1-8B-shaped
SGLang host pool (page_first MHA, bf16, 64-token pages: 8 MiB a page) goes
through KVTierHiCacheStorage's batch_set_v1 / batch_get_v1 in both forms:
block (pages through the registered shm staging region, ids on the socket)
and inline (page bytes in the socket frames, kvtier_staging_pages: 0).

The reference makes the copies the block form cannot avoid, with the same
bytes in the same run, one after the other on one thread: host pool ->
staging and staging -> another buffer (the daemon's slab), and back, the
pool side with the block form's own page copies (block_form.gather and
scatter), so a faster page copy speeds the reference alike and the ratio
shows only what the block form adds or overlaps (it pipelines the two
copies over two processes). Every page loaded is compared
with the page stored (outside the timed part). Figures are medians over the
rounds, ratios medians of per-round ratios (each round times block, inline
and the reference back to back), with every sample in samples_ms; beside
them the CPU seconds per GB each form costs this process and the daemon,
which other processes' load on shared cores does not move. Prints one JSON
object.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integrations", "python"))

import torch  # noqa: E402

from kvtier.refengine.sglang_pools import PoolDims, host_indices, make_pool, storage_config  # noqa: E402
from kvtier.sglang import KVTierHiCacheStorage  # noqa: E402
from kvtier.sglang.block_form import gather, page_view, scatter  # noqa: E402

PAGE = 64
LAYOUT = "page_first"


def backend(sock, pool, **extra):
    b = KVTierHiCacheStorage(storage_config(sock, model_name="bench/llama-3.1-8b", **extra), {})
    b.register_mem_pool_host(pool)
    return b


class Meter:
    """Wall clock and CPU seconds (this process, all threads; and the daemon's) around one transfer."""

    def __init__(self, daemon_pid):
        self.pid = daemon_pid

    def __enter__(self):
        self.t, self.c, self.d = time.perf_counter(), time.process_time(), process_cpu_s(self.pid)
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t
        self.client = time.process_time() - self.c
        self.daemon = process_cpu_s(self.pid) - self.d
        return False


class Form:
    """One transfer form's two backends (a stores from src, b loads into dst) and its samples."""

    def __init__(self, sock, form, src, dst, pages):
        staging = pages if form == "block" else 0
        self.form, self.src, self.dst, self.pages = form, src, dst, pages
        self.a = backend(sock, src, kvtier_staging_pages=staging)
        self.b = backend(sock, dst, kvtier_staging_pages=staging)
        self.idx = host_indices(list(range(pages)), PAGE)
        self.store_s, self.load_s, self.verified = [], [], True

    def store(self, r, meter):
        keys = [f"{self.form}-{r}-{i}" for i in range(self.pages)]
        with meter:
            ok = self.a.batch_set_v1(keys, self.idx)
        if ok != [True] * self.pages:
            raise SystemExit(f"{self.form}: the daemon stored {sum(ok)} of {self.pages} pages (pool too small?)")

    def load(self, r, meter):
        keys = [f"{self.form}-{r}-{i}" for i in range(self.pages)]
        self.dst.kv_buffer.zero_()
        with meter:
            ok = self.b.batch_get_v1(keys, self.idx)
        if ok != [True] * self.pages:
            raise SystemExit(f"{self.form}: loaded {sum(ok)} of {self.pages} pages")
        self.verified &= torch.equal(self.src.kv_buffer.view(torch.uint8), self.dst.kv_buffer.view(torch.uint8))

    def close(self):
        mode = self.a.transfer_mode
        self.a.close()
        self.b.close()
        return mode


class Reference:
    """host pool -> staging -> slab (store) and slab -> staging -> host pool (retrieve), as block form copies."""

    def __init__(self, src, dst, pages, page_bytes):
        self.src, self.dst = src, dst
        self.sv, self.dv = page_view(src), page_view(dst)
        self.ids = torch.arange(pages)
        self.staging = torch.empty((pages,) + tuple(self.sv.shape[1:]), dtype=self.sv.dtype)
        self.slab = torch.empty(pages * page_bytes, dtype=torch.uint8)

    def store(self, r, meter):
        with meter:
            gather(self.src, self.sv, self.ids, self.staging)
            self.slab.copy_(self.staging.reshape(-1).view(torch.uint8))

    def load(self, r, meter):
        with meter:
            self.staging.reshape(-1).view(torch.uint8).copy_(self.slab)
            scatter(self.dst, self.dv, self.ids, self.staging)


def median(xs):
    return sorted(xs)[len(xs) // 2]


def process_cpu_s(pid):
    """utime + stime of a process (the daemon), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    sock, pages, rounds, daemon_pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    dims = PoolDims(layers=32, heads=8, dim=128, mla_dim=576, page=PAGE, pages=pages)
    src, dst = make_pool("mha", LAYOUT, dims, seed=1), make_pool("mha", LAYOUT, dims, zero=True)
    page_bytes = src.get_dummy_flat_data_page().numel() * 2
    total = pages * page_bytes
    block, inline = Form(sock, "block", src, dst, pages), Form(sock, "inline", src, dst, pages)
    ref = Reference(src, dst, pages, page_bytes)
    # Rounds interleave block, inline and the reference (the order turning each round), so a
    # neighbour's load or the allocator's state hits all three alike, and every ratio is the
    # median of per-round ratios. Round 0 warms up (RegisterKv, page faults of the staging
    # region, the daemon's first slabs, malloc's mmap threshold for 8 MiB pages) and is not kept.
    # CPU seconds (this process, all threads; and the daemon's) are counted beside the wall
    # clock: on a machine whose cores other processes share, the wall clock of the CPU-bound
    # inline form moves with their load, its CPU cost per byte does not.
    runs = (block, inline, ref)
    samples = {"store": {id(x): [] for x in runs}, "load": {id(x): [] for x in runs}}
    cpu = {op: {id(x): [0.0, 0.0] for x in runs} for op in ("store", "load")}
    for op in ("store", "load"):
        for r in range(rounds + 1):
            order = runs if r % 2 == 0 else runs[::-1]
            for x in order:
                m = Meter(daemon_pid)
                getattr(x, op)(r, m)
                if r > 0:
                    samples[op][id(x)].append(m.wall)
                    cpu[op][id(x)][0] += m.client
                    cpu[op][id(x)][1] += m.daemon

    def gbps(op, x):
        return round(total / median(samples[op][id(x)]) / 1e9, 3)

    def ratio(op, x, y):
        return round(median([b_ / a_ for a_, b_ in zip(samples[op][id(x)], samples[op][id(y)])]), 2)

    gb = rounds * total / 1e9

    def cpu_per_gb(op, x):
        client, daemon = cpu[op][id(x)]
        return {"client": round(client / gb, 3), "daemon": round(daemon / gb, 3)}

    def cpu_ratio(op, x, y):
        a_, b_ = sum(cpu[op][id(x)]), sum(cpu[op][id(y)])
        return round(b_ / a_, 2) if a_ > 0 else None

    rows = []
    for x in (block, inline):
        rows.append({"form": x.form, "transfer_mode": x.close(), "store_gbps": gbps("store", x),
                     "retrieve_gbps": gbps("load", x), "verified": x.verified,
                     "cpu_s_per_gb": {"store": cpu_per_gb("store", x), "retrieve": cpu_per_gb("load", x)},
                     "samples_ms": {op: [round(t * 1e3, 1) for t in samples[op][id(x)]] for op in ("store", "load")}})
    reference = {"what": f"torch, one after the other: {pages} pages into a staging tensor and copy_ into a second "
                         f"buffer, and back, with the block form's own page copies (block_form.gather: index_select; "
                         f"block_form.scatter: copy_ per run of consecutive pages), {torch.get_num_threads()} torch threads",
                 "store_gbps": gbps("store", ref), "retrieve_gbps": gbps("load", ref),
                 "samples_ms": {op: [round(t * 1e3, 1) for t in samples[op][id(ref)]] for op in ("store", "load")}}
    print(json.dumps({
        "model": "llama-3.1-8b: 32 layers x 8 kv heads x 128 dim, bf16", "layout": f"mha {LAYOUT}", "page_tokens": PAGE,
        "page_bytes": page_bytes, "pages_per_batch": pages, "rounds": rounds, "rows": rows, "reference": reference,
        "ratio": {"block_vs_reference": {"store": ratio("store", block, ref), "retrieve": ratio("load", block, ref)},
                  "block_vs_inline": {"store": ratio("store", block, inline), "retrieve": ratio("load", block, inline)},
                  "inline_vs_block_cpu": {"store": cpu_ratio("store", block, inline),
                                          "retrieve": cpu_ratio("load", block, inline)}},
    }))


if __name__ == "__main__":
    main()
