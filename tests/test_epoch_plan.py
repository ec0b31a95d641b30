"""reader/plan.py: exactly-once, balanced assignment over world × workers × seed × epoch."""

import itertools

import numpy as np
import pytest

from lerobot_wds.reader.epoch_plan import Span, plan_spans, samples_per_rank, shard_order, slices_per_episode
from lerobot_wds.reader.world import World

# 3 shards of uneven episodes (like the fixture), and 1 shard (fewer shards than slots).
LAYOUTS = {
    "three": [[45, 80, 12], [60, 90], [33]],
    "one": [[45, 80, 12, 60]],
    "tiny": [[1], [2], [3]],
}


def frames_of(spans: list[Span], layout) -> list[tuple[int, int, int]]:
    return [(s.shard, s.position, f) for s in spans for f in range(s.start, s.stop)]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("world_size,num_workers", [(1, 1), (1, 2), (2, 1), (2, 2), (3, 4), (4, 3)])
@pytest.mark.parametrize("seed,epoch", [(0, 0), (0, 1), (5, 3)])
@pytest.mark.parametrize("pool_size", [1, 64])
def test_exactly_once_and_equal_ranks(layout, world_size, num_workers, seed, epoch, pool_size):
    lengths = LAYOUTS[layout]
    total = sum(map(sum, lengths))
    n = samples_per_rank(total, world_size)
    seen: list[tuple[int, int, int]] = []
    for rank in range(world_size):
        per_rank = []
        for w in range(num_workers):
            spans = plan_spans(lengths, seed, epoch, World(rank, world_size, w, num_workers), pool_size=pool_size)
            assert all(0 <= s.start < s.stop <= lengths[s.shard][s.position] for s in spans)
            per_rank += frames_of(spans, lengths)
        assert len(per_rank) == n  # every rank yields the same number of samples
        seen += per_rank
    assert len(seen) == len(set(seen))  # nothing duplicated
    assert total - len(seen) < world_size  # what is left out is bounded


@pytest.mark.parametrize("pool_size", [1, 64])
def test_workers_balanced(pool_size):
    lengths = LAYOUTS["three"]
    counts = [
        sum(s.length for s in plan_spans(lengths, 0, 0, World(0, 1, w, 3), pool_size=pool_size)) for w in range(3)
    ]
    assert max(counts) - min(counts) <= 1


def test_few_episodes_are_sliced_over_workers():
    """6 episodes, 2 workers, pools of 64: each worker draws from every episode (a half of each)."""
    lengths = LAYOUTS["three"]
    for w in range(2):
        spans = plan_spans(lengths, 0, 0, World(0, 1, w, 2), pool_size=64)
        assert len({(s.shard, s.position) for s in spans}) == 6
    # With a pool the workers' own episodes fill, nothing is sliced (each episode is read once).
    spans = [plan_spans(lengths, 0, 0, World(0, 1, w, 2), pool_size=2) for w in range(2)]
    assert sum(len({(s.shard, s.position) for s in sp}) for sp in spans) <= 6 + 1  # one boundary episode
    assert slices_per_episode(6, 2, 64) == 2 and slices_per_episode(6, 8, 64) == 8
    assert slices_per_episode(1000, 8, 64) == 1 and slices_per_episode(200, 8, 64) == 3
    assert slices_per_episode(6, 2, 64, shuffle=False) == 1


def test_shard_order_per_epoch():
    assert shard_order(5, 0, 0, shuffle=False).tolist() == [0, 1, 2, 3, 4]
    orders = {tuple(shard_order(8, 1, e, shuffle=True)) for e in range(6)}
    assert len(orders) > 1  # reshuffles across epochs
    assert np.array_equal(shard_order(8, 1, 2, True), shard_order(8, 1, 2, True))


def test_left_out_rotates_with_epoch():
    lengths = [[5], [6], [7]]  # 18 frames, world 4 -> 2 left out
    left = set()
    for epoch in range(6):
        seen = set()
        for r in range(4):
            seen |= set(frames_of(plan_spans(lengths, 0, epoch, World(r, 4, 0, 1)), lengths))
        assert len(seen) == 16
        left.add(frozenset(set(itertools.chain.from_iterable(
            [(s, 0, f) for f in range(n[0])] for s, n in enumerate(lengths))) - seen))
    assert len(left) > 1


def test_more_slots_than_frames():
    lengths = [[1], [2]]
    spans = [plan_spans(lengths, 0, 0, World(r, 2, w, 4)) for r in range(2) for w in range(4)]
    assert sum(s.length for sp in spans for s in sp) == 2
