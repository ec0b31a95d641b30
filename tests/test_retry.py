"""reader/retry.py: through a proxy that resets connections and answers 503 SlowDown, every byte
range arrives exactly once and equal; a range that keeps failing raises an error naming it."""

from __future__ import annotations

import os

import pytest
import s3fs

from lerobot_wds.reader.retry import RetryPolicy, StorageError, is_transient, read_range_retrying
from lerobot_wds.reader.io_stats import Stats
from lerobot_wds.reader.storage import Store
from testkit.servers import Faults, s3_options

FAST = RetryPolicy(max_attempts=6, base_delay_s=0.001, max_delay_s=0.01)


@pytest.fixture(scope="module")
def blob(s3_server):
    data = os.urandom(1_500_000)
    s3fs.S3FileSystem(**s3_options(s3_server.endpoint_url)).pipe("lerobot-wds-test/retry/blob.bin", data)
    return data


@pytest.fixture
def no_client_retries(monkeypatch):
    """Leave every retry to reader/retry.py, so the proxy's faults reach it."""
    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_faulty_proxy_every_range_exactly_once(blob, fault_proxy, no_client_retries, seed):
    # at most 3 faults in a row for one range: FAST gives up after 6 without progress, so whether
    # the test passes must not depend on which request happens to draw which fault
    proxy = fault_proxy(Faults(reset=0.25, slowdown=0.2, seed=seed, max_faults=60, max_in_a_row=3))
    store = Store("s3://lerobot-wds-test/retry", s3_options(proxy.endpoint_url),
                  retry=FAST, chunk_bytes=40_000, prefetch_bytes=200_000, stats=Stats())
    requests = [("blob.bin", s, s + 30_000 + 997 * k) for k, s in enumerate(range(0, 1_400_000, 35_000))]
    got = list(store.stream_ranges(requests))
    assert len(got) == len(requests)
    for (_, s, e), data in zip(requests, got):
        assert data == blob[s:e], f"range {s}-{e} differs"
    stats = store.stats.snapshot()
    assert proxy.counts["reset"] + proxy.counts["slowdown"] > 5  # faults did happen
    assert stats["retries"] >= proxy.counts["reset"] + proxy.counts["slowdown"]  # each one retried
    assert stats["bytes_fetched"] == sum(e - s for _, s, e in requests)  # nothing fetched twice


def test_range_that_keeps_failing_names_url_and_range(blob, fault_proxy, no_client_retries):
    proxy = fault_proxy(Faults(fail_path="blob.bin"))
    store = Store("s3://lerobot-wds-test/retry", s3_options(proxy.endpoint_url),
                  retry=RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.001))
    named = r"s3://lerobot-wds-test/retry/blob.bin: bytes 100-5000 .*3 failed attempts.*reduce your request rate"
    with pytest.raises(StorageError, match=named):
        store.read_range("blob.bin", 100, 5000)
    assert proxy.counts["slowdown"] == 3
    with pytest.raises(StorageError, match="blob.bin: bytes 0-10"):
        list(store.stream_ranges([("blob.bin", 0, 10)]))


def test_short_reads_resume_where_they_stopped():
    data = bytes(range(256)) * 40
    asked = []

    def read(s: int, e: int) -> bytes:  # answers at most 1000 bytes, and fails every 3rd call
        asked.append((s, e))
        if len(asked) % 3 == 0:
            raise ConnectionResetError("reset by peer")
        return data[s : min(e, s + 1000)]

    stats = Stats()
    got = read_range_retrying(read, 123, 9000, where="mem://x", policy=FAST, stats=stats, sleep=lambda s: None)
    assert got == data[123:9000]
    starts = [s for s, _ in asked]
    assert starts == sorted(starts) and all(e == 9000 for _, e in asked)
    assert stats.snapshot()["bytes_fetched"] == 9000 - 123


def test_permanent_errors_are_not_retried():
    calls = []

    def read(s, e):
        calls.append(s)
        raise FileNotFoundError("gone")

    with pytest.raises(StorageError, match="mem://y: reading bytes 0-5 failed"):
        read_range_retrying(read, 0, 5, where="mem://y", policy=FAST, sleep=lambda s: None)
    assert calls == [0]
    assert not is_transient(PermissionError("no"))
    assert is_transient(TimeoutError()) and is_transient(ConnectionResetError())
    wrapped = OSError(5, "boto said so")
    wrapped.__cause__ = type("ClientError", (Exception,), {"response": {"Error": {"Code": "SlowDown"}}})()
    assert is_transient(wrapped)


def test_policy_backoff_is_capped_and_validated():
    p = RetryPolicy(max_attempts=5, base_delay_s=0.1, max_delay_s=0.3)
    assert [p.delay_s(k) for k in (1, 2, 3, 4)] == [0.1, 0.2, 0.3, 0.3]
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
