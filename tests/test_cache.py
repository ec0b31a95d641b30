"""reader/cache.py: byte ranges kept on local disk, never more than the size bound."""

from __future__ import annotations

import os
import time

from lerobot_wds.reader.cache import RangeCache
from lerobot_wds.reader.storage import Store


def test_get_put_and_versioned_keys(tmp_path):
    cache = RangeCache(tmp_path / "c", max_bytes=1000)
    cache.put("s3://b/ds", "shard-000000.tar", "sha1", 0, 4, b"abcd")
    assert cache.get("s3://b/ds", "shard-000000.tar", "sha1", 0, 4) == b"abcd"
    assert cache.get("s3://b/ds", "shard-000000.tar", "sha2", 0, 4) is None  # repacked shard
    assert cache.get("s3://b/ds", "shard-000000.tar", "sha1", 0, 5) is None
    cache.put("s3://b/ds", "x", "", 0, 3, b"abcd")  # wrong length: refused
    assert cache.get("s3://b/ds", "x", "", 0, 3) is None


def test_size_bound_evicts_least_recently_used(tmp_path):
    cache = RangeCache(tmp_path, max_bytes=2500)
    for k in range(5):
        cache.put("u", "n", "", k * 1000, k * 1000 + 1000, bytes([k]) * 1000)
        os.utime(cache._path("u", "n", "", k * 1000, k * 1000 + 1000), ns=(time.time_ns() + k * 10**9,) * 2)
        assert cache.size_bytes() <= 2500
    assert cache.get("u", "n", "", 4000, 5000) == bytes([4]) * 1000
    assert cache.get("u", "n", "", 0, 1000) is None
    cache.put("u", "big", "", 0, 3000, b"z" * 3000)  # larger than the bound: not stored
    assert cache.get("u", "big", "", 0, 3000) is None and cache.size_bytes() <= 2500


def test_store_serves_second_read_from_cache(tmp_path):
    (tmp_path / "ds").mkdir()
    payload = os.urandom(50_000)
    (tmp_path / "ds" / "shard-000000.tar").write_bytes(payload)
    reqs = [("shard-000000.tar", s, s + 5_000) for s in range(0, 50_000, 5_000)]
    store = Store(str(tmp_path / "ds"), cache_dir=tmp_path / "cache", cache_max_bytes=30_000, prefetch_bytes=10_000)
    assert list(store.stream_ranges(reqs)) == [payload[s:e] for _, s, e in reqs]
    assert store.cache.size_bytes() <= 30_000
    first = store.stats.snapshot()["bytes_fetched"]
    assert list(store.stream_ranges(reqs[-6:])) == [payload[s:e] for _, s, e in reqs[-6:]]  # the last 6 fit
    snap = store.stats.snapshot()
    assert snap["bytes_fetched"] == first and snap["bytes_from_cache"] == 30_000
