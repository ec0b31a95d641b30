"""Counters that tell whether a run is network-, decode- or model-bound, summed across workers.

How to use it (the API the dataset and the storage layer call)::

    stats = Stats()                       # in the main process, before DataLoader workers start
    with stats.timer(DECODE_S):           # adds the elapsed seconds to "decode_s"
        frames = decoder.get_frames_at(...)
    stats.add(SKIPPED)                    # a counter: +1 (or + value)
    stats.observe(POOL_EPISODES, len(pool))  # a level: aggregated as mean and max
    stats.flush()                         # at the end of each worker's __iter__ (in a finally:)
    stats.snapshot()                      # in the main process: this process + every worker

A ``Stats`` object is picklable; every process that holds a copy (DataLoader workers get one when
the dataset is pickled) writes its own counters to ``<dir>/<pid>-<random id>.json`` (atomically: ``.tmp`` then
rename) at most once per ``flush_interval_s`` seconds while counting, and whenever ``flush()`` is
called. ``snapshot()`` sums this process's counters with every other process's file, so counts of
workers that have exited (one set per epoch without ``persistent_workers``) are kept. Worker
processes end with ``os._exit`` (no atexit), hence the explicit ``flush()``.

Counter names ending in ``_s`` are seconds, ``bytes_*`` bytes. Fetch seconds are spent in
background threads and overlap the consumer's work; ``wait_s`` is the time the consumer actually
waited for data, which is what a network-bound run shows.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from contextlib import contextmanager
from typing import Iterator

#: Seconds spent in storage reads (background threads included; overlaps other work).
FETCH_S = "fetch_s"
#: Seconds spent decoding video frames.
DECODE_S = "decode_s"
#: Seconds the consumer waited for bytes that were not fetched yet.
WAIT_S = "wait_s"
#: Bytes asked for in storage requests (a retry asks again for what is missing), bytes received
#: from storage, and bytes served by the local cache.
BYTES_REQUESTED = "bytes_requested"
BYTES_FETCHED = "bytes_fetched"
BYTES_FROM_CACHE = "bytes_from_cache"
#: Number of storage requests sent, and of those retried after a transient error.
REQUESTS = "requests"
RETRIES = "retries"
#: Items skipped under ``on_error="skip"``.
SKIPPED = "skipped"
#: Episodes held in the shuffle pool (observed per sample), and prefetched bytes in memory.
POOL_EPISODES = "pool_episodes"
PREFETCH_BYTES = "prefetch_bytes"
#: Batches (``batch_size=N``) whose camera tensors went into newly allocated memory; the others
#: reused the memory of an earlier batch that nothing held any more (reader/batch.py).
BATCHES_IN_NEW_MEMORY = "batches_in_new_memory"


class Stats:
    """Thread-safe counters and levels of one process, aggregated across processes by file."""

    def __init__(self, dir: str | None = None, flush_interval_s: float = 1.0) -> None:
        self.flush_interval_s = flush_interval_s
        if dir is None:  # ours: removed when this object goes away in this process (not in a fork)
            dir = tempfile.mkdtemp(prefix="lerobot-wds-stats-")
            weakref.finalize(self, _remove_if_owner, dir, os.getpid())
        self.dir = dir
        self._init_local()

    def _init_local(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, float] = {}
        self._levels: dict[str, list[float]] = {}  # name -> [n, sum, max]
        self._pid = os.getpid()
        self._fname = f"{self._pid}-{uuid.uuid4().hex[:12]}.json"  # one file per process and copy
        self._last_flush = time.monotonic()

    def __getstate__(self) -> dict:
        return {"dir": self.dir, "flush_interval_s": self.flush_interval_s}

    def __setstate__(self, state: dict) -> None:
        self.dir = state["dir"]
        self.flush_interval_s = state["flush_interval_s"]
        self._init_local()  # a copy in another process starts from zero and writes its own file

    def add(self, name: str, value: float = 1) -> None:
        """Add ``value`` to the counter ``name`` (seconds, bytes or a count)."""
        self._check_process()
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + value
        self._maybe_flush()

    def observe(self, name: str, value: float) -> None:
        """Record one observation of a level (e.g. pool occupancy); reported as mean and max."""
        self._check_process()
        with self._lock:
            n_sum_max = self._levels.setdefault(name, [0, 0.0, float("-inf")])
            n_sum_max[0] += 1
            n_sum_max[1] += value
            n_sum_max[2] = max(n_sum_max[2], value)
        self._maybe_flush()

    @contextmanager
    def timer(self, name: str) -> Iterator[None]:
        """Add the wall-clock seconds spent inside the ``with`` block to ``name``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def _check_process(self) -> None:
        if os.getpid() != self._pid:  # a forked DataLoader worker: its counts are its own
            self._init_local()

    def _state(self) -> dict:
        with self._lock:
            return {"counts": dict(self._counts), "levels": {k: list(v) for k, v in self._levels.items()}}

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Write this process's counters to ``<dir>/<pid>-<id>.json`` so ``snapshot()`` elsewhere sees them."""
        self._check_process()
        self._last_flush = time.monotonic()
        path = os.path.join(self.dir, self._fname)
        tmp = f"{path}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(self._state(), f)
            os.replace(tmp, path)
        except OSError:  # the dir was removed (run over): counters are best-effort, never fatal
            pass

    def snapshot(self) -> dict[str, float]:
        """Totals over this process and every process that flushed into ``dir``.

        Counters come back under their names; a level ``x`` comes back as ``x_mean`` and ``x_max``.
        """
        self._check_process()
        states = [self._state()]
        try:
            names = sorted(os.listdir(self.dir))
        except OSError:
            names = []
        for fname in names:
            if fname.endswith(".json") and fname != self._fname:
                try:
                    with open(os.path.join(self.dir, fname)) as f:
                        states.append(json.load(f))
                except (OSError, ValueError):
                    continue  # a file being replaced right now: its counts come next time
        return merge_states(states)


def _remove_if_owner(dir: str, pid: int) -> None:
    if os.getpid() == pid:
        shutil.rmtree(dir, ignore_errors=True)


def merge_states(states: list[dict]) -> dict[str, float]:
    """Sum counters; combine levels into ``<name>_mean`` (over all observations) and ``<name>_max``."""
    counts: dict[str, float] = {}
    levels: dict[str, list[float]] = {}
    for s in states:
        for k, v in s.get("counts", {}).items():
            counts[k] = counts.get(k, 0) + v
        for k, (n, total, mx) in s.get("levels", {}).items():
            acc = levels.setdefault(k, [0, 0.0, float("-inf")])
            acc[0] += n
            acc[1] += total
            acc[2] = max(acc[2], mx)
    out = dict(sorted(counts.items()))
    for k, (n, total, mx) in sorted(levels.items()):
        out[f"{k}_mean"] = total / n if n else 0.0
        out[f"{k}_max"] = mx if n else 0.0
    return out


def format_stats(stats: dict[str, float]) -> str:
    """One line per counter, for ``tools/bench_*``: seconds with 3 decimals, bytes in MB."""
    lines = []
    for k, v in stats.items():
        if k.startswith("bytes") or k.startswith(PREFETCH_BYTES):
            lines.append(f"  {k:<24} {v / 1e6:12.3f} MB")
        elif k.endswith("_s"):
            lines.append(f"  {k:<24} {v:12.3f} s")
        else:
            lines.append(f"  {k:<24} {v:12.3f}".rstrip("0").rstrip("."))
    return "\n".join(lines)
