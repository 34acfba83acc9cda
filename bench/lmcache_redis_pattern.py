"""LMCache's RedisConnector pattern, for the Valkey throughput bench.

What LMCache's Redis remote backend does with a chunk, in pure Python with
redis-py: two keys per chunk (`<key>:metadata`, a small header, and
`<key>:kv_bytes`, the whole chunk as one value), one shared redis.Redis
(connection pool) used from a thread pool. The same server and chunk size
as the kvtier rows it sits beside.

  /usr/bin/python3 bench/lmcache_redis_pattern.py HOST PORT CHUNK_BYTES COUNT THREADS

prints {"what", "store_gbps", "retrieve_gbps", "misses"}; exits 3 when
redis-py is not installed (Debian: python3-redis).
"""
import json
import os
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor

try:
    import redis
except ImportError:
    sys.exit(3)


def main() -> None:
    host, port, size, count, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    client = redis.Redis(host=host, port=port, max_connections=threads)
    payload = os.urandom(size)
    keys = [f"kvtier-bench-lmcache:{i}" for i in range(count)]
    meta = struct.pack("<4i", 256, 0, 0, size)

    def put(k: str) -> None:
        client.set(k + ":metadata", meta)
        client.set(k + ":kv_bytes", payload)

    def get(k: str) -> int:
        if client.get(k + ":metadata") is None:
            return -1
        v = client.get(k + ":kv_bytes")
        return -1 if v is None else len(v)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, keys))  # cold: the server allocates
        t = time.perf_counter()
        list(pool.map(put, keys))
        store_s = time.perf_counter() - t
        t = time.perf_counter()
        got = list(pool.map(get, keys))
        get_s = time.perf_counter() - t
    client.delete(*[k + s for k in keys for s in (":metadata", ":kv_bytes")])
    # A value evicted by the server's LRU is a miss, as it would be for LMCache:
    # retrieve counts only the bytes that came back, and the misses are shown.
    hits = sum(1 for n in got if n == size)
    print(json.dumps({
        "what": f"LMCache RedisConnector pattern: redis-py {redis.__version__}, {threads} threads, metadata + kv_bytes keys, {count} chunks of {size} bytes",
        "store_gbps": round(count * size / store_s / 1e9, 3),
        "retrieve_gbps": round(hits * size / get_s / 1e9, 3),
        "misses": count - hits,
    }))


if __name__ == "__main__":
    main()
