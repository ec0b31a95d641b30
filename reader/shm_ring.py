"""A DataLoader worker's batch memory, reused once the training process has let go of it.

A batch a worker builds travels to the training process in shared memory (torch sends the
storage's file descriptor; nothing is copied). Fresh shared memory is expensive to fill: every
4 KiB page is faulted in and zeroed on first write, which at 480x640 cost a worker about as much
as decoding (a batch of 32 windowed samples is 66 MB: 16,000 pages). Writing into pages that are
already mapped costs only the copy. ``tools/bench_cpu.py bench_out/peers/packed --workers 1
--batched [--windows]`` (480x640, batch 32), against the same reader before this module: worker CPU
per sample 4.0-4.9 ms instead of 7.9 with windows, 4.4-4.7 instead of 5.7 without; in the training
process 0.22-0.26 ms instead of 0.38-0.66 (it maps memory it has mapped before, and unmaps less).

Only the training process knows when a batch is no longer used, so it says so:

- The worker (:class:`WorkerRing`) hands out each set of camera tensors with a slot number, a
  serial number never used before, and a small shared ``released`` table (one int64 per slot).
- The batch is a :class:`RingBatch`, a dict whose pickling makes the training process run
  :func:`arrived` when it unpickles the batch: that returns a plain ``dict`` and keeps weak
  references to the batch's camera storages. A thread of the training process checks them every
  :data:`POLL_S`: once a batch's storages are all gone in this process (no tensor, view or numpy
  array of them is left; with ``pin_memory``, once the pinned copy is made), its serial is
  written into its slot of its worker's ``released`` table, and the thread ends when no batch is
  left to watch.
- The worker writes into a set again only when the table holds that set's own serial. A set whose
  release never comes (the batch is kept, or never unpickled by :func:`arrived`) is simply not
  reused: the worker forgets it after :data:`SLOTS` newer ones and allocates fresh memory, as a
  plain DataLoader would. Serials are unique, so a late report about a forgotten set never frees
  another.

So memory is reused only on a positive report that the training process dropped every reference.
What the training process cannot see is a third process: a batch sent on from the training
process to another one (``torch.multiprocessing``) must be cloned first, or its frames may be
overwritten once the training process lets go of its own reference. Memory: a worker keeps at
most :data:`SLOTS` sets, the ones in flight to the training process plus those released and
waiting for reuse.
"""

from __future__ import annotations

import atexit
import secrets
import threading
from typing import Any, Callable

import torch
from torch.multiprocessing.reductions import StorageWeakRef

#: Sets of batch memory one worker keeps track of: the batches in flight (DataLoader's
#: ``prefetch_factor``, 2 by default, plus the one being used) and those released but not yet reused.
SLOTS = 8


class WorkerRing:
    """One worker's sets of batch memory (each a dict of camera tensors) and their release table."""

    def __init__(self, slots: int = SLOTS) -> None:
        self.token = secrets.token_hex(8)
        self.released = torch.full((slots,), -1, dtype=torch.int64).share_memory_()
        self._held: list[tuple[int, dict[str, torch.Tensor]] | None] = [None] * slots  # slot -> (serial, set)
        self._serial = 0

    def take(self) -> dict[str, torch.Tensor] | None:
        """A set the training process has released (then this worker's to write), or None. Of
        more released sets, one stays for the next batch and the others are let go (freed)."""
        released = self.released.tolist()
        free = [s for s, held in enumerate(self._held) if held is not None and released[s] == held[0]]
        for slot in free[2:]:
            self._held[slot] = None
        if not free:
            return None
        got = self._held[free[0]]
        self._held[free[0]] = None
        return got[1]

    def hand_out(self, batch: dict[str, Any], keys: list[str], buffers: dict[str, torch.Tensor]) -> "RingBatch":
        """``batch`` (whose ``keys`` are views of ``buffers``), made to report its release."""
        free = [s for s, h in enumerate(self._held) if h is None]
        slot = free[0] if free else min(range(len(self._held)), key=lambda s: self._held[s][0])  # forget the oldest
        self._serial += 1
        self._held[slot] = (self._serial, buffers)
        return RingBatch(batch, (self.token, slot, self._serial, self.released, keys))


class RingBatch(dict):
    """A batch dict that, unpickled in the training process, becomes a plain dict watched by
    :func:`arrived`. Copies made in the worker (``copy.copy``, as DataLoader's ``default_convert``
    does) stay ring batches."""

    def __init__(self, batch: dict[str, Any], ticket: tuple) -> None:
        super().__init__(batch)
        self.ticket = ticket

    def __copy__(self) -> "RingBatch":
        return RingBatch(self, self.ticket)

    def __reduce__(self) -> tuple[Callable, tuple]:
        return arrived, (dict(self), *self.ticket)


#: In the training process: per worker token, its ``released`` table and the batches not yet
#: released (slot -> (serial, weak references to the batch's camera storages)).
_WATCHED: dict[str, tuple[torch.Tensor, dict[int, tuple[int, list[StorageWeakRef]]]]] = {}
_LOCK = threading.Lock()  # DataLoader unpickles on the pin-memory thread when pin_memory=True
_WATCHER: threading.Thread | None = None
_EXITING = threading.Event()  # set at interpreter exit: the watcher ends (_stop_watching)
#: Seconds between checks of the watched batches: a worker reuses a set only once it is reported
#: (otherwise it allocates another), so the report should come well within a batch's build time.
POLL_S = 0.005


def arrived(batch: dict[str, Any], token: str, slot: int, serial: int, released: torch.Tensor,
            keys: list[str]) -> dict[str, Any]:
    """Unpickling a :class:`RingBatch` in the training process: watch this batch (a thread reports
    its release) and return it as a plain dict."""
    global _WATCHER
    refs = [StorageWeakRef(batch[k].untyped_storage()) for k in keys]
    with _LOCK:
        _WATCHED.setdefault(token, (released, {}))[1][slot] = (serial, refs)
        if _WATCHER is None:
            _WATCHER = threading.Thread(target=_watch, name="lerobot-wds-shm-ring", daemon=True)
            _WATCHER.start()
    return batch


def _watch() -> None:
    """Report released batches every :data:`POLL_S` until none is watched (or the interpreter exits)."""
    global _WATCHER
    while not _EXITING.wait(POLL_S):
        with _LOCK:
            if not _report_released():
                _WATCHER = None
                return


def _stop_watching() -> None:
    """At interpreter exit (``atexit``, which runs before Python finalizes): end the watcher thread.
    A daemon thread still running when finalization starts is killed the moment it next takes the
    GIL; inside torch's C++ (writing a ``released`` table releases and retakes the GIL) that kills
    the process instead: "terminate called without an active exception", exit status -6. Batches
    still held at exit are never reported; their workers are exiting too."""
    _EXITING.set()
    watcher = _WATCHER
    if watcher is not None:
        watcher.join(timeout=5.0)


atexit.register(_stop_watching)


def _report_released() -> int:
    """Write the serial of every watched batch that no longer has a storage alive in this process
    into its worker's ``released`` table; returns the number of batches still watched. Call with
    ``_LOCK`` held."""
    for token, (table, pending) in list(_WATCHED.items()):
        for slot, (serial, refs) in list(pending.items()):
            if all(r.expired() for r in refs):
                table[slot] = serial
                del pending[slot]
        if not pending:
            del _WATCHED[token]
    return sum(len(pending) for _, pending in _WATCHED.values())
