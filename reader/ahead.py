"""Running an iterator in a background thread, a bounded number of items ahead of its consumer.

Used when samples are built in the training process itself (DataLoader ``num_workers=0``): the
decode of the next samples then overlaps with what the consumer does between them (collate, the
training step). torchcodec releases the GIL while it decodes (two threads decode 1.8x as fast as
one: ``tools/bench_frame_costs.py``), so the overlap is real parallelism, not interleaving.

Order and content are those of the wrapped iterator; an exception it raises reaches the consumer
at the position it happened, with its type. When the consumer stops early (``close()``, garbage
collection), the producer stops within ``POLL_S`` and closes the wrapped iterator in its own
thread (so its ``finally`` clauses run); at interpreter exit, producers still running are stopped
and joined before modules are torn down (a daemon thread caught inside native decode code while
the process exits aborts it). Memory: at most ``capacity`` items wait in between.
"""

from __future__ import annotations

import atexit
import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")

#: How often a producer blocked on a full queue checks whether the consumer has gone.
POLL_S = 0.1
#: How long stopping waits for a producer (one item's work, unless it is stuck in I/O).
JOIN_S = 10.0
_END = object()
_running: set[tuple[threading.Event, threading.Thread]] = set()


def _stop(gone: threading.Event, thread: threading.Thread) -> None:
    gone.set()
    if thread is not threading.current_thread():
        thread.join(JOIN_S)
    _running.discard((gone, thread))


@atexit.register
def _stop_all() -> None:
    for gone, thread in list(_running):
        _stop(gone, thread)


def run_ahead(items: Iterator[T], capacity: int, name: str = "lerobot-wds-ahead") -> Iterator[T]:
    """Yield ``items`` in order, produced by a daemon thread at most ``capacity`` items ahead."""
    if capacity < 1:
        raise ValueError(f"capacity={capacity} must be >= 1")
    box: queue.Queue = queue.Queue(capacity)
    gone = threading.Event()

    def put(entry: tuple[bool, object]) -> bool:
        while not gone.is_set():
            try:
                box.put(entry, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, _END))
        except BaseException as e:  # handed to the consumer, raised there
            put((False, e))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    _running.add((gone, thread))
    thread.start()
    try:
        while True:
            ok, item = box.get()
            if not ok:
                raise item  # type: ignore[misc]
            if item is _END:
                return
            yield item  # type: ignore[misc]
    finally:
        _stop(gone, thread)
