"""reader/build_threads.py on real threads: each episode's items built in submission order and never
by two threads at once, across runs too; helpers going on with a later run while the caller collects
an earlier one; errors reaching the caller; closing."""

import threading
import time

import pytest

from lerobot_wds.reader.build_threads import THREAD_NAME, BuildThreads, BuildThreadsClosed


class Recorder:
    """A build function that takes a little while and records who built what, when."""

    def __init__(self, seconds: float = 0.002) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.log: list[tuple[str, int, str, float, float]] = []  # (episode, item, thread, start, end)

    def __call__(self, item: tuple[str, int]) -> str:
        start = time.perf_counter()
        time.sleep(self.seconds)
        with self.lock:
            self.log.append((*item, threading.current_thread().name, start, time.perf_counter()))
        return f"{item[0]}:{item[1]}"


def groups(episodes: str, per: int, first: int) -> list:
    """One group per episode, ``per`` items each, numbered from ``first`` (positions in the run from 0)."""
    out, j = [], 0
    for n, e in enumerate(episodes):
        out.append((e, [(j + k, (e, first + k)) for k in range(per + n % 2)]))
        j += per + n % 2
    return out


def test_each_episode_is_built_in_order_by_one_thread_at_a_time_across_runs():
    rec = Recorder()
    threads = BuildThreads(3, rec)
    try:
        runs = [threads.submit(groups("abcde", 2, first=10 * r)) for r in range(4)]  # all queued at once
        results = [threads.finish(run) for run in runs]
    finally:
        threads.close()
    for r, got in enumerate(results):
        want = {j: f"{e}:{10 * r + k}" for e, items in groups("abcde", 2, 0) for j, (_, k) in items}
        assert got == want
    by_episode: dict[str, list] = {}
    for e, item, _, start, end in sorted(rec.log, key=lambda x: x[3]):
        by_episode.setdefault(e, []).append((item, start, end))
    for e, built in by_episode.items():
        assert [i for i, *_ in built] == sorted(i for i, *_ in built), f"episode {e} out of order"
        assert all(a[2] <= b[1] for a, b in zip(built, built[1:])), f"episode {e} built by two threads at once"
    names = {name.split("_")[0] for *_, name, _, _ in rec.log}
    assert names == {THREAD_NAME, "MainThread"}  # the caller builds too


def test_helpers_go_on_with_queued_runs_while_the_caller_is_elsewhere():
    """The caller queues two runs and builds nothing (as while it hands a batch over): the helper
    builds both, in the order they were queued."""
    rec = Recorder()
    threads = BuildThreads(1, rec)
    try:
        first, second = threads.submit(groups("ab", 2, 0)), threads.submit(groups("cd", 2, 0))
        deadline = time.monotonic() + 10
        while (first.left or second.left) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert first.left == second.left == 0
        assert [(e, i, name) for e, i, name, _, _ in rec.log] == [
            (e, i, f"{THREAD_NAME}_0") for e, i in [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("b", 2),
                                                     ("c", 0), ("c", 1), ("d", 0), ("d", 1), ("d", 2)]]
        assert threads.finish(second) == {0: "c:0", 1: "c:1", 2: "d:0", 3: "d:1", 4: "d:2"}
    finally:
        threads.close()


def test_an_error_on_a_helper_is_raised_by_finish():
    def build(item):
        if threading.current_thread().name.startswith(THREAD_NAME):
            raise MemoryError("out of something on a helper")
        time.sleep(0.01)
        return item

    threads = BuildThreads(1, build)
    try:
        run = threads.submit([(e, [(n, n)]) for n, e in enumerate("abcdef")])
        with pytest.raises(MemoryError, match="on a helper"):
            threads.finish(run)
    finally:
        threads.close()


def test_close_stops_the_helpers_and_a_run_left_unbuilt_cannot_be_finished():
    threads = BuildThreads(2, Recorder(0.05))
    run = threads.submit(groups("abcdefgh", 1, 0))
    threads.close()
    assert not [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME)]
    if run.left:
        with pytest.raises(BuildThreadsClosed):
            threads.finish(run)
