"""reader/cache.py: byte ranges kept on local disk, never more than the size bound."""

from __future__ import annotations

import os
import threading
import time

import pytest

from lerobot_wds.errors import UsageError
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
    bound = 6 * (5_000 + 8)  # six entries, each with its XXH3
    store = Store(str(tmp_path / "ds"), cache_dir=tmp_path / "cache", cache_max_bytes=bound, prefetch_bytes=10_000)
    assert list(store.stream_ranges(reqs)) == [payload[s:e] for _, s, e in reqs]
    assert store.cache.size_bytes() <= bound
    first = store.stats.snapshot()["bytes_fetched"]
    assert list(store.stream_ranges(reqs[-6:])) == [payload[s:e] for _, s, e in reqs[-6:]]  # the last 6 fit
    snap = store.stats.snapshot()
    assert snap["bytes_fetched"] == first and snap["bytes_from_cache"] == 30_000


@pytest.mark.parametrize("tamper", ["flipped", "same size, other bytes", "link to /dev/zero", "fifo", "link to a file"])
def test_a_damaged_or_replaced_entry_is_a_miss_and_is_replaced(tmp_path, tamper):
    """What another process may leave under an entry's name: never read past its size, never waited
    on, never handed out; the entry is dropped and the next fetch stores it again."""
    cache = RangeCache(tmp_path / "cache", 10_000)
    data = os.urandom(1000)
    cache.put("u", "n", "v", 0, 1000, data)
    path = cache._path("u", "n", "v", 0, 1000)
    raw = open(path, "rb").read()
    os.unlink(path)
    if tamper == "flipped":
        open(path, "wb").write(bytes([raw[0] ^ 1]) + raw[1:])
    elif tamper == "same size, other bytes":
        open(path, "wb").write(os.urandom(len(raw)))
    elif tamper == "link to /dev/zero":
        os.symlink("/dev/zero", path)
    elif tamper == "fifo":
        os.mkfifo(path)
    else:
        (tmp_path / "other").write_bytes(raw)
        os.symlink(tmp_path / "other", path)
    assert cache.get("u", "n", "v", 0, 1000) is None
    assert not os.path.lexists(path)
    cache.put("u", "n", "v", 0, 1000, data)
    assert cache.get("u", "n", "v", 0, 1000) == data


def test_writes_go_to_a_new_file_not_through_a_planted_link(tmp_path):
    """The temporary name an entry is written under is predictable: a link planted there must not
    make the cache write into the file it points to."""
    cache = RangeCache(tmp_path / "cache", 10_000)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    path = cache._path("u", "n", "v", 0, 3)
    os.symlink(victim, f"{path}.{os.getpid()}.{threading.get_ident()}.tmp")
    cache.put("u", "n", "v", 0, 3, b"abc")
    assert victim.read_bytes() == b"keep me"


def test_a_new_directory_is_private_and_one_every_user_can_write_is_refused(tmp_path):
    """Whoever can write the directory can plant entries: it must be the user's own."""
    RangeCache(tmp_path / "new", 1000)
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(UsageError, match=f"{shared} is writable by every user"):
        RangeCache(shared, 1000)
    with pytest.raises(UsageError, match="cache_dir /tmp "):  # every user's, whoever runs this
        Store(str(tmp_path), cache_dir="/tmp")
    shared.chmod(0o770)  # the group's: those the user trusts
    cache = RangeCache(shared, 1000)
    cache.put("u", "n", "v", 0, 3, b"abc")
    assert cache.get("u", "n", "v", 0, 3) == b"abc"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a directory away needs root")
def test_a_directory_of_another_user_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 12345, -1)
    with pytest.raises(UsageError, match=r"belongs to another user \(uid 12345\)"):
        RangeCache(theirs, 1000)
