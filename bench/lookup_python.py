"""`kvtier bench lookup`'s Python side: the integrations/python client doing the bench's Lookup.

Run by bench/lookup.ts with /usr/bin/python3 against the daemon the bench
started and filled: argv = socket path, packed-u32 token file, chunk size,
iterations. The tokens go in as a list of ints, as the vLLM scheduler passes
them (kvtier/vllm/scheduler.py); each lease is released (and the release
acknowledged) outside the timed part. Prints one JSON object, microseconds.
"""
import json
import os
import sys
import time
from array import array

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integrations", "python"))

from kvtier.client import KvtierClient  # noqa: E402
from kvtier.hashing import Fingerprint  # noqa: E402


def main() -> None:
    path, token_file, chunk_size, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    packed = array("I")
    with open(token_file, "rb") as f:
        packed.frombytes(f.read())
    tokens = packed.tolist()
    fp = Fingerprint(model="bench-lookup", dtype="", kv_layout="", chunk_size=chunk_size)
    samples = []
    hit = 0
    with KvtierClient(path, fp, client_kind="bench-python", timeout=10.0) as client:
        for i in range(50 + iterations):
            t = time.perf_counter()
            ok = client.lookup(tokens=tokens)
            us = (time.perf_counter() - t) * 1e6
            hit = ok.hit_chunks
            client.release_lease(ok.lease_id, wait=True)
            if i >= 50:
                samples.append(us)
    samples.sort()

    def at(q: float) -> float:
        return round(samples[min(len(samples) - 1, int(q * len(samples)))], 1)

    print(json.dumps({"chunks_hit": hit, "p50": at(0.5), "p99": at(0.99), "max": round(samples[-1], 1)}))


if __name__ == "__main__":
    main()
