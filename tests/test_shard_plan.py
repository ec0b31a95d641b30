"""packer/plan.py: shard planning is pure, ordered, never splits an episode, respects the target."""

from __future__ import annotations

import random

import pytest

from lerobot_wds.packer.shard_plan import estimate_episode_bytes, parse_size, plan_shards


@pytest.mark.parametrize("seed", range(20))
def test_every_episode_once_in_order_and_under_target_unless_alone(seed):
    rng = random.Random(seed)
    sizes = [rng.randint(1, 300) for _ in range(rng.randint(1, 60))]
    target = rng.randint(1, 700)
    shards = plan_shards(sizes, target)
    assert [i for s in shards for i in s] == list(range(len(sizes)))
    for s in shards:
        assert s and (len(s) == 1 or sum(sizes[i] for i in s) <= target)
    # greedy: the next shard's first episode would not have fit
    for a, b in zip(shards, shards[1:]):
        assert sum(sizes[i] for i in a) + sizes[b[0]] > target
    assert plan_shards(sizes, target) == shards


def test_oversized_episode_gets_its_own_shard_and_tiny_target_gives_one_per_shard():
    assert plan_shards([5, 50, 5, 5], 10) == [[0], [1], [2, 3]]
    assert plan_shards([3, 3, 3], 1) == [[0], [1], [2]]
    assert plan_shards([], 10) == []


def test_parse_size_units_and_errors():
    assert parse_size("512MB") == 512_000_000
    assert parse_size("1GiB") == 2**30
    assert parse_size("1.5kb") == 1500
    assert parse_size("7") == 7
    for bad in ("", "MB", "-1MB", "3 parsecs", "0"):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)


def test_estimate_prorates_data_by_rows_and_video_by_time():
    est = estimate_episode_bytes(10, 1000, 100, {"top": (3000, 1.0, 3.0)})
    assert est == 100 + 1000 + 1536 * 3
