"""reader/prefetch.py: bytes in order, exactly once, fetched ahead within the byte budget."""

from __future__ import annotations

import threading
import time

import pytest

from lerobot_wds.reader.prefetch import MAX_GAP, Prefetcher
from lerobot_wds.reader.io_stats import Stats

DATA = bytes(range(256)) * 400  # 102,400 bytes


class Recorder:
    """A real in-memory source that records what was fetched and how much was held at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fetched: list[tuple[int, int]] = []

    def fetch(self, name: str, start: int, end: int) -> bytes:
        time.sleep(0.001)
        with self.lock:
            self.fetched.append((start, end))
        return DATA[start:end]


def _requests(n: int = 60, size: int = 1500):
    return [("d", k * size, k * size + size - (k % 7)) for k in range(n)]


@pytest.mark.parametrize("max_bytes,threads", [(0, 1), (4_000, 2), (20_000, 4)])
def test_in_order_exactly_once_and_bounded(max_bytes, threads):
    src = Recorder()
    stats = Stats()
    pf = Prefetcher(src.fetch, _requests(), max_bytes=max_bytes, chunk_bytes=1000, threads=threads, stats=stats)
    out = []
    for data in pf:
        assert pf.bytes_in_flight <= max(max_bytes, 1500)
        out.append(data)
    assert out == [DATA[s:e] for _, s, e in _requests()]
    fetched = sorted(src.fetched)
    assert sum(e - s for s, e in fetched) == sum(e - s for _, s, e in _requests())  # no piece twice
    assert pf.peak_bytes <= max(max_bytes, 1500)
    assert stats.snapshot()["prefetch_bytes_max"] <= max(max_bytes, 1500)


def test_request_larger_than_budget_still_arrives():
    src = Recorder()
    pf = Prefetcher(src.fetch, [("d", 0, 50_000), ("d", 50_000, 50_010)], max_bytes=5_000, chunk_bytes=4_096)
    assert list(pf) == [DATA[:50_000], DATA[50_000:50_010]]


def test_requests_are_pulled_lazily_and_closing_stops_fetching():
    src = Recorder()
    pulled = []

    def requests():
        for r in _requests(1000, 1000):
            pulled.append(r)
            yield ("d", r[1] % 100_000, r[1] % 100_000 + 100)

    it = iter(Prefetcher(src.fetch, requests(), max_bytes=1_000, chunk_bytes=100, threads=2))
    first = next(it)
    assert first == DATA[:100]
    assert len(pulled) <= 12  # about max_bytes / request size ahead, not the whole list
    it.close()
    time.sleep(0.05)
    n = len(src.fetched)
    time.sleep(0.05)
    assert len(src.fetched) == n <= 12


def test_errors_surface_at_their_request():
    def fetch(name, start, end):
        if start >= 3000:
            raise OSError(f"{name}: bytes {start}-{end} broken")
        return DATA[start:end]

    it = iter(Prefetcher(fetch, _requests(5, 1000), max_bytes=10_000, chunk_bytes=1000))
    assert [next(it) for _ in range(3)] == [DATA[s:e] for _, s, e in _requests(3, 1000)]
    with pytest.raises(OSError, match="d: bytes 3000-"):
        next(it)


def test_cache_hits_skip_fetching_and_completions_are_reported():
    src = Recorder()
    done = []
    pf = Prefetcher(src.fetch, [("d", 0, 10), ("d", 10, 20)], cached=lambda n, s, e: b"x" * 10 if s == 0 else None,
                    on_complete=lambda n, s, e, d: done.append((s, e, d)))
    assert list(pf) == [b"x" * 10, DATA[10:20]]
    assert src.fetched == [(10, 20)] and done == [(10, 20, DATA[10:20])]


def test_a_request_past_the_end_of_its_file_fails_having_fetched_little():
    """A manifest may claim a range far past the end of its shard: pieces are cut only as they are
    submitted, so the read fails at the file's end instead of planning 10**6 pieces first."""
    src = Recorder()

    def fetch(name, start, end):
        if end > len(DATA):
            raise OSError(f"{name}: file ends at {len(DATA)}, bytes {start}-{end} asked for")
        return src.fetch(name, start, end)

    pf = Prefetcher(fetch, [("d", 0, 10**9)], max_bytes=4_000, chunk_bytes=1000, threads=2)
    with pytest.raises(OSError, match="file ends at 102400"):
        list(pf)
    assert len(src.fetched) <= len(DATA) // 1000 + 2
    assert pf.peak_bytes <= len(DATA) + 2 * 1000


def test_requests_next_to_each_other_are_fetched_as_one():
    """Episodes of a shard in packed order lie next to each other (tar padding between them): one
    request of up to chunk_bytes fetches several, each handed over as its own bytes."""
    src = Recorder()
    requests = [("d", k * 1000, k * 1000 + 1000 - (k % 7)) for k in range(20)]  # gaps of 0-6 bytes
    out = list(Prefetcher(src.fetch, requests, max_bytes=20_000, chunk_bytes=4_000, threads=2))
    assert [bytes(d) for d in out] == [DATA[s:e] for _, s, e in requests]
    assert sorted(src.fetched) == [(4000 * g, requests[4 * g + 3][2]) for g in range(5)]  # four in each


@pytest.mark.parametrize("second", [
    ("e", 1000, 2000),  # another file
    ("d", 1000 + MAX_GAP + 1, 2000 + MAX_GAP),  # too far apart
    ("d", 500, 1500),  # overlapping: each as asked
    ("d", 0, 1000),  # the same range twice
    ("d", 1000, 10_000),  # together more than chunk_bytes
])
def test_requests_apart_stay_apart(second):
    src = Recorder()
    data = {"d": DATA * 2, "e": DATA}

    def fetch(name, start, end):
        src.fetch(name, start, end)
        return data[name][start:end]

    requests = [("d", 0, 1000), second]
    assert list(Prefetcher(fetch, requests, chunk_bytes=5_000)) == [data[n][s:e] for n, s, e in requests]
    assert sorted(src.fetched) == sorted([(0, 1000)] + [(s, min(e, s + 5_000)) for s, e in [second[1:]] for s in range(s, e, 5_000)])


def test_a_joined_request_that_fails_is_fetched_again_alone():
    """The last of three joined requests runs past the file's end: the other two still arrive, and
    the error surfaces at the request it belongs to."""
    src = Recorder()

    def fetch(name, start, end):
        if end > len(DATA):
            raise OSError(f"{name}: file ends at {len(DATA)}, bytes {start}-{end} asked for")
        return src.fetch(name, start, end)

    requests = [("d", 99_000, 100_000), ("d", 100_000, 101_000), ("d", 101_000, 103_000)]
    it = iter(Prefetcher(fetch, requests, chunk_bytes=8_000))
    assert bytes(next(it)) == DATA[99_000:100_000]
    assert bytes(next(it)) == DATA[100_000:101_000]
    with pytest.raises(OSError, match="bytes 101000-103000"):
        next(it)
    assert sorted(src.fetched) == [(99_000, 100_000), (100_000, 101_000)]


def test_cache_and_completions_stay_per_request_when_joined():
    src = Recorder()
    done = []
    requests = [("d", 0, 10), ("d", 10, 20), ("d", 20, 30), ("d", 30, 40)]
    pf = Prefetcher(src.fetch, requests, cached=lambda n, s, e: b"x" * 10 if s == 20 else None,
                    on_complete=lambda n, s, e, d: done.append((s, e, bytes(d))))
    assert [bytes(d) for d in pf] == [DATA[0:10], DATA[10:20], b"x" * 10, DATA[30:40]]
    assert sorted(src.fetched) == [(0, 20), (30, 40)]  # the hit splits the run
    assert done == [(0, 10, DATA[0:10]), (10, 20, DATA[10:20]), (30, 40, DATA[30:40])]
