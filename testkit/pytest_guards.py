"""Autouse fixtures the test suites' ``conftest.py`` import: checks every test must pass."""

from __future__ import annotations

import os
from typing import Iterator

import pytest


@pytest.fixture(autouse=True)
def scheduling_unchanged() -> Iterator[None]:
    """Fail a test that leaves this process's scheduling changed, and set it back. SVT-AV1 makes
    the thread that opens an AV1 encoder real-time, as root, and every process started afterwards
    inherits that (``lerobot_wds/packer/scheduling.py``): the later tests' DataLoader workers and
    ranks then can starve each other until the run hangs."""
    if not hasattr(os, "sched_getscheduler"):
        yield
        return
    before = os.sched_getscheduler(0), os.sched_getparam(0)
    yield
    after = os.sched_getscheduler(0), os.sched_getparam(0)
    if after != before:
        os.sched_setscheduler(0, *before)
        pytest.fail(f"the test left this process's scheduling (policy, priority) at {after[0]}, "
                    f"{after[1].sched_priority}, not {before[0]}, {before[1].sched_priority}: wrap what encodes "
                    "AV1 in lerobot_wds.packer.scheduling.scheduling_kept()")
