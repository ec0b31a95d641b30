"""Keeping the scheduling that SVT-AV1 takes and does not give back.

libsvtav1 (SVT-AV1, lerobot's default AV1 encoder, inside PyAV's wheels: 15.1's and 18.1's alike)
gives the thread that opens an encoder real-time scheduling, ``SCHED_FIFO`` at priority 99,
wherever it may (as root, which is how most containers run), and leaves it so once the encoder is
closed. Every process that thread starts afterwards inherits it: packing workers, DataLoader
workers, ``torch.distributed`` ranks. Real-time processes that wait by spinning are never
preempted by the others of their priority, so on a machine with few cores they starve each other
and everything else: on the development machine (2 cores) test runs after an AV1 encode hung for
40 minutes, and their processes did not even die on SIGKILL until their policy was set back.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def scheduling_kept() -> Iterator[None]:
    """Give the calling thread back its scheduling policy and priority when the block ends,
    whatever an encoder opened in it did to them (see the module docstring)."""
    if not hasattr(os, "sched_getscheduler"):  # not Linux: nothing to keep
        yield
        return
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        yield
    finally:
        if (os.sched_getscheduler(0), os.sched_getparam(0)) != (policy, param):
            os.sched_setscheduler(0, policy, param)
