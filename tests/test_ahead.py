"""reader/ahead.py: an iterator run in a background thread keeps its order, its errors and its
cleanup, stays a bounded number of items ahead, and stops with its consumer; the dataset uses it
when it iterates in the training process, and counts what the consumer took, not what was built."""

import threading
import time

import pytest

from lerobot_wds.reader import LeRobotShardDataset
from lerobot_wds.reader.ahead import run_ahead


def producer_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_same_items_in_the_same_order():
    assert list(run_ahead(iter(range(1000)), 3)) == list(range(1000))
    assert list(run_ahead(iter([]), 1)) == []


def test_error_reaches_the_consumer_at_its_position():
    def items():
        yield from range(5)
        raise KeyError("episode 7")

    got = []
    with pytest.raises(KeyError, match="episode 7"):
        for x in run_ahead(items(), 2):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]


def test_stays_at_most_capacity_ahead():
    made = []

    def items():
        for i in range(100):
            made.append(i)
            yield i

    it = run_ahead(items(), 4)
    assert next(it) == 0
    time.sleep(0.3)  # the producer fills the queue and waits
    assert len(made) <= 1 + 4 + 1  # taken + queued + one in hand
    assert list(it) == list(range(1, 100))


def test_consumer_stopping_early_stops_and_closes_the_producer():
    closed = threading.Event()

    def items():
        try:
            for i in range(10**9):
                yield i
        finally:
            closed.set()

    it = run_ahead(items(), 2, name="test-ahead-stop")
    assert next(it) == 0
    assert producer_threads("test-ahead-stop")
    it.close()
    assert closed.wait(5) and not producer_threads("test-ahead-stop")


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity=0"):
        next(run_ahead(iter([1]), 0))


def test_dataset_decodes_ahead_in_the_main_process_and_counts_what_was_taken(packed):
    path = packed("lerobot_v3_av1")
    ds = LeRobotShardDataset(path, seed=2)
    it = iter(ds)
    head = [int(next(it)["index"]) for _ in range(50)]
    time.sleep(0.3)  # let the decode thread run ahead
    assert producer_threads("lerobot-wds-decode")
    assert ds.state_dict()["yielded"] == 50  # taken, not built
    it.close()
    assert not producer_threads("lerobot-wds-decode")
    resumed = LeRobotShardDataset(path, seed=2)
    resumed.load_state_dict(ds.state_dict())
    rest = [int(x["index"]) for x in resumed]
    assert sorted(head + rest) == list(range(320))
