"""Batches built one ahead of the training loop, in the training process (``num_workers=0``).

Without it a batch is built only when the loop asks for it: the decoding threads stand idle
through every training step, and the step waits through every build. DataLoader workers overlap
the two by prefetching; at ``num_workers=0`` this does the same with one batch: a thread of the
dataset's own (with the decoding helpers it uses, reader/dataset.py) builds batch n + 1 while the
loop has batch n (and its helpers begin batch n + 2 while it hands n + 1 over, reader/dataset.py).
One ahead, not more: each batch built ahead is a batch of frames in memory (``BatchSlots`` keeps
one more set of rows for reuse, reader/batch.py).

The batches, their order and the resume state are what building them on the loop's thread gives:
``state_dict()`` counts the samples of the batches handed over, not of the one being built.
"""

from __future__ import annotations

import atexit
import queue
import threading
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

#: Name of the threads that build batches ahead.
THREAD_NAME = "lerobot-wds-build"

#: Seconds :func:`_stop_all` waits at interpreter exit for a build in progress.
_EXIT_WAIT_S = 30.0

#: The builders running now: (stop, go, thread) each.
_LIVE: set[tuple[threading.Event, threading.Semaphore, threading.Thread]] = set()


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def one_ahead(items: Iterator[T], progress: Callable[[], int], publish: Callable[[int], None]) -> Iterator[T]:
    """``items``, each taken from the iterator on a thread of its own one item before the caller
    asks for it. ``progress()`` is read on that thread right after each item (and at the end), and
    ``publish`` gets that value on the caller's thread as the item is handed over (at the end: the
    last value). An error raised while building an item is raised to the caller when it asks for
    that item. Closing the returned generator waits for a build in progress and closes ``items``."""
    results: queue.SimpleQueue = queue.SimpleQueue()
    go, stop = threading.Semaphore(0), threading.Event()

    def build() -> None:
        try:
            while True:
                go.acquire()
                if stop.is_set():
                    return
                try:
                    item = next(items)
                except StopIteration:
                    results.put((_DONE, progress()))
                    return
                except BaseException as e:  # noqa: BLE001 - raised again on the caller's thread
                    results.put((_Failed(e), None))
                    return
                results.put((item, progress()))
        finally:
            _LIVE.discard(live)

    thread = threading.Thread(target=build, name=THREAD_NAME, daemon=True)
    live = (stop, go, thread)
    _LIVE.add(live)
    thread.start()
    go.release()
    try:
        while True:
            item, count = results.get()
            if isinstance(item, _Failed):
                raise item.error
            publish(count)
            if item is _DONE:
                return
            go.release()  # build the next while the caller has this one
            yield item
    finally:
        if threading.current_thread() is thread:
            # Finalized by the garbage collector on the builder thread itself, maybe inside
            # next(items): it must neither join itself nor close what it is running; told to stop,
            # it returns once that item is done.
            stop.set()
            go.release()
        else:
            _end(live)
            close = getattr(items, "close", None)
            if close is not None:
                close()


def _end(live: tuple[threading.Event, threading.Semaphore, threading.Thread], timeout: float | None = None) -> None:
    """Tell a builder to stop and wait for it (it leaves :data:`_LIVE` as it returns)."""
    stop, go, thread = live
    stop.set()
    go.release()
    thread.join(timeout)


def _stop_all() -> None:
    """At interpreter exit (``atexit``, before Python finalizes): end the builder threads of
    iterations never closed. A daemon thread still inside torch's or FFmpeg's code when
    finalization starts aborts the process (reader/shm_ring.py ends its watcher for that reason)."""
    for live in list(_LIVE):
        _end(live, _EXIT_WAIT_S)


atexit.register(_stop_all)
