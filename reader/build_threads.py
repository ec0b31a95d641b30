"""The threads that build batches' samples: the calling thread and helpers, one episode's draws at a time.

A run of draws (a batch's, ``reader/dataset.py``) is cut into groups, one per episode: its draws in
draw order, which one thread builds in turn (an episode's frames are decoded front to back by one
decoder, never by two threads at once). Each thread takes the first waiting group whose episode no
thread is building, whenever it is done with its last one, so the threads finish a run together
however the episodes' costs differ.

Runs may be queued before the earlier ones are done: the helpers then go on with the next run's
groups while the calling thread collects a finished run and hands its batch over, instead of
waiting for it. A group of an episode that is still being built for an earlier run waits until
that one is done, so each episode's draws are still built in draw order, across runs too. The
calling thread builds groups too while it waits for a run (those of a later run as well, once the
run it waits for has none waiting).
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections import deque
from typing import Any, Callable, Hashable, Sequence

#: Name prefix of the helper threads.
THREAD_NAME = "lerobot-wds-decode"

#: Those not closed yet: closed at interpreter exit, before Python finalizes (a daemon thread still
#: inside FFmpeg's code when finalization starts aborts the process, reader/one_ahead.py).
_LIVE: weakref.WeakSet[BuildThreads] = weakref.WeakSet()


class BuildThreadsClosed(RuntimeError):
    """The threads were closed while a run was still being built."""


class Run:
    """A queued run of groups: each draw's result by its position in the run, once every group is built."""

    __slots__ = ("results", "left", "error")

    def __init__(self, groups: int) -> None:
        self.results: dict[int, Any] = {}
        self.left = groups  # groups not built yet
        self.error: BaseException | None = None


class BuildThreads:
    """``helpers`` threads, and the calling thread in :meth:`finish`, building queued groups with
    ``build(item)`` for each item of a group; closed with :meth:`close`."""

    def __init__(self, helpers: int, build: Callable[[Any], Any]) -> None:
        self._build = build
        self._changed = threading.Condition()  # a group queued or built, or the threads told to stop
        self._waiting: deque[tuple[Run, Hashable, Sequence[tuple[int, Any]]]] = deque()
        self._busy: set[Hashable] = set()  # episodes a thread is building a group of now
        self._closed = False
        self._threads = [threading.Thread(target=self._work, args=(lambda: self._closed,), daemon=True,
                                          name=f"{THREAD_NAME}_{i}") for i in range(helpers)]
        for t in self._threads:
            t.start()
        _LIVE.add(self)

    def submit(self, groups: Sequence[tuple[Hashable, Sequence[tuple[int, Any]]]]) -> Run:
        """Queue a run: ``groups`` are ``(episode, [(position in the run, item), ...])``, each
        episode's items in draw order, the groups in the order threads should take them."""
        run = Run(len(groups))
        with self._changed:
            self._waiting.extend((run, episode, items) for episode, items in groups)
            self._changed.notify_all()
        return run

    def finish(self, run: Run) -> dict[int, Any]:
        """Build groups on this thread until ``run`` is built; its results. An error other than
        what ``build`` returns, raised while building any of its groups, is raised here."""
        self._work(lambda: run.left == 0)
        if run.error is not None:
            raise run.error
        return run.results

    def close(self) -> None:
        """Drop the waiting groups and stop the helpers (each after the group it is building)."""
        with self._changed:
            self._closed = True
            self._waiting.clear()
            self._changed.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()
        _LIVE.discard(self)

    def _work(self, done: Callable[[], bool]) -> None:
        while True:
            with self._changed:
                while not done():
                    if self._closed:
                        raise BuildThreadsClosed("the build threads were closed while a run was being built")
                    job = self._take()
                    if job is not None:
                        break
                    self._changed.wait()
                else:
                    return
            run, episode, items = job
            results, error = [], None
            try:
                for j, item in items:
                    results.append((j, self._build(item)))
            except BaseException as e:  # noqa: BLE001 - raised again by the thread that finishes the run
                error = e
            with self._changed:
                run.results.update(results)
                if error is not None and run.error is None:
                    run.error = error
                run.left -= 1
                self._busy.discard(episode)
                self._changed.notify_all()

    def _take(self) -> tuple[Run, Hashable, Sequence[tuple[int, Any]]] | None:
        """The first waiting group whose episode no thread is building (taken: its episode now busy)."""
        for n, job in enumerate(self._waiting):
            if job[1] not in self._busy:
                del self._waiting[n]
                self._busy.add(job[1])
                return job
        return None


def _close_all() -> None:
    for threads in list(_LIVE):
        threads.close()


atexit.register(_close_all)
