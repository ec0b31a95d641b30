"""reader/mixture.py: shares, determinism, epochs with per-source passes, exact resume, curriculum."""

import math

import numpy as np
import pytest
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from lerobot_wds.reader import LeRobotShardDataset, mix
from lerobot_wds.reader.mixture import source_choices
from lerobot_wds.reader.world import World
from reader_helpers import assert_resumes


def within_4_sigma(count, n, p):
    """|count - n p| within 4 binomial standard deviations (false alarm rate ~6e-5 per check)."""
    return abs(count - n * p) <= 4 * math.sqrt(n * p * (1 - p))


def sources(path, rank=0, world_size=1, groups=([0, 1], [2, 3]), **kw):
    return [LeRobotShardDataset(path, episodes=g, seed=s, episode_pool_size=2, rank=rank, world_size=world_size, **kw)
            for s, g in enumerate(groups)]


def uid(item):
    """A frame's identity across sources: dataset_index * 1000 + index."""
    return item["dataset_index"] * 1000 + item["index"]


class Uids:
    """A mixture or loader whose items are reduced to ``{"index": uid}`` (for assert_resumes)."""

    def __init__(self, inner):
        self.inner = inner

    def __iter__(self):
        return ({"index": uid(b)} for b in self.inner)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)


def test_choices_follow_weights_and_seed():
    probs = [0.2, 0.5, 0.3]
    draw = lambda seed=0, epoch=0, world=World(): np.fromiter(source_choices(probs, seed, epoch, world), int, 20_000)
    got = draw()
    n = len(got)
    for i, p in enumerate(probs):
        assert within_4_sigma(int((got == i).sum()), n, p)
    assert np.array_equal(draw(), got)
    for other in (draw(seed=1), draw(epoch=1), draw(world=World(0, 1, 1, 2)), draw(world=World(1, 2))):
        assert not np.array_equal(other, got)
    assert set(np.fromiter(source_choices([0.0, 1.0], 0, 0, World()), int, 500)) == {1}


def test_realised_shares_deterministic_and_reported(packed):
    path = packed("lerobot_v3_images")
    m = mix(sources(path), [0.25, 0.75], seed=3, num_samples=200)
    got = [(int(x["dataset_index"]), int(x["index"])) for x in m]
    assert len(got) == len(m) == 200
    counts = np.bincount([d for d, _ in got], minlength=2)
    assert within_4_sigma(counts[0], 200, 0.25)
    assert m.shares() == pytest.approx(list(counts / 200))
    again = mix(sources(path), [0.25, 0.75], seed=3, num_samples=200)
    assert [(int(x["dataset_index"]), int(x["index"])) for x in again] == got
    other = mix(sources(path), [0.25, 0.75], seed=4, num_samples=200)
    assert [(int(x["dataset_index"]), int(x["index"])) for x in other] != got


def test_a_source_that_runs_out_starts_a_new_pass(packed):
    # Source 0 is episode 1 alone (7 frames): drawn ~30 times, it must replay its 7 frames in
    # complete passes, each pass a permutation, in an order that changes between passes.
    path = packed("lerobot_v3_images")
    m = mix(sources(path, groups=([1], [0, 2, 3])), [0.5, 0.5], seed=0, num_samples=60)
    small = [int(x["index"]) for x in m if int(x["dataset_index"]) == 0]
    assert len(small) > 14
    passes = [small[i : i + 7] for i in range(0, len(small) - len(small) % 7, 7)]
    assert all(sorted(p) == list(range(20, 27)) for p in passes)
    assert len({tuple(p) for p in passes}) > 1


def test_epoch_and_weights_change_between_epochs(packed):
    path = packed("lerobot_v3_images")
    m = mix(sources(path), [0.5, 0.5], num_samples=80)
    first = [int(uid(x)) for x in m]
    m.set_epoch(1)
    assert [int(uid(x)) for x in m] != first
    m.set_weights([0.0, 1.0])  # curriculum: only the second source from now on
    assert {int(x["dataset_index"]) for x in m} == {1}
    state = m.state_dict()
    with pytest.raises(ValueError, match="weights="):
        mix(sources(path), [0.5, 0.5], num_samples=80).load_state_dict(state)


@pytest.mark.parametrize("k", [0, 1, 17, 40])
def test_resume_alone_and_across_passes(packed, k):
    path = packed("lerobot_v3_images")
    # Pool sizes and weights such that no source runs out: each frame appears at most once.
    assert_resumes(lambda: Uids(mix(sources(path, groups=([0, 1, 2], [3])), [0.7, 0.3], seed=1, num_samples=40)), k)

    # Source 0 (7 frames) runs out several times; its passes must resume exactly too.
    def make():
        return mix(sources(path, groups=([1], [0, 2, 3])), [0.5, 0.5], seed=2, num_samples=40)

    full = [int(uid(x)) for x in make()]
    first = make()
    it = iter(first)
    head = [int(uid(next(it))) for _ in range(k)]
    resumed = make()
    resumed.load_state_dict(first.state_dict())
    assert head + [int(uid(x)) for x in resumed] == full


@pytest.mark.parametrize("num_workers", [0, 2])
def test_stateful_dataloader_ranks_workers(packed, num_workers):
    path = packed("lerobot_v3_images")
    for rank in (0, 1):
        def make():
            m = mix(sources(path, rank, 2), [0.34, 0.66], seed=5, num_samples=32)
            m.set_epoch(2)
            return Uids(StatefulDataLoader(m, batch_size=4, num_workers=num_workers))
        assert_resumes(make, 3)


def test_state_of_another_slot_or_setting_is_refused(packed):
    path = packed("lerobot_v3_images")
    m = mix(sources(path), [0.5, 0.5], num_samples=20)
    next(iter(m))
    state = m.state_dict()
    with pytest.raises(ValueError, match="seed=0, 1"):
        mix(sources(path), [0.5, 0.5], seed=1, num_samples=20).load_state_dict(state)
    state["slot"] = [0, 1, 1, 2]
    other = mix(sources(path), [0.5, 0.5], num_samples=20)
    other.load_state_dict(state)
    with pytest.raises(ValueError, match=r"belongs to .*\(0, 1, 1, 2\)"):
        next(iter(other))


def test_a_huge_yielded_count_is_refused_not_skipped(packed):
    """A mixture skips a resumed slot's draws one by one: a damaged count of 10**15 is an error."""
    path = packed("lerobot_v3_images")
    m = mix(sources(path), [0.5, 0.5], num_samples=20)
    next(iter(m))
    state = m.state_dict()
    state["yielded"] = 10**15
    other = mix(sources(path), [0.5, 0.5], num_samples=20)
    other.load_state_dict(state)
    with pytest.raises(ValueError, match="yields 20 per epoch"):
        next(iter(other))


def test_config_errors(packed):
    path = packed("lerobot_v3_images")
    with pytest.raises(ValueError, match=r"1 weights \[1.0\] for 2 datasets"):
        mix(sources(path), [1.0])
    with pytest.raises(ValueError, match=r"weights \[-1.0, 2.0\] must be finite, >= 0"):
        mix(sources(path), [-1.0, 2.0])
    a = LeRobotShardDataset(path, rank=0, world_size=2)
    b = LeRobotShardDataset(path, rank=1, world_size=2)
    with pytest.raises(ValueError, match=r"disagree on \(rank, world_size\)"):
        mix([a, b], [1, 1])
    ds = LeRobotShardDataset(path)
    with pytest.raises(ValueError, match="same dataset object twice"):
        mix([ds, ds], [1, 1])
    # uint8 and float32 frames of one camera cannot share a batch
    with pytest.raises(ValueError, match=r"key 'observation.images.front' differs.*camera_uint8"):
        mix([LeRobotShardDataset(path), LeRobotShardDataset(path, return_uint8=True)], [1, 1])


def test_default_weights_and_epoch_length(packed):
    path = packed("lerobot_v3_images")
    m = mix(sources(path, world_size=2))  # weights proportional to frames: 27 and 53
    assert m.weights == pytest.approx([27 / 80, 53 / 80])
    assert len(m) == 40 and m.num_samples == 80
    item = next(iter(m))
    assert item["dataset_index"].dtype == torch.int64 and item["dataset_index"].ndim == 0


def test_shares_count_samples_drawn_in_workers(packed):
    from torch.utils.data import DataLoader

    m = mix(sources(packed("lerobot_v3_images")), [0.5, 0.5], seed=9, num_samples=40)
    drawn = torch.cat([b["dataset_index"] for b in DataLoader(m, batch_size=8, num_workers=2)])
    assert len(drawn) == 40
    assert m.shares() == pytest.approx([float((drawn == 0).float().mean()), float((drawn == 1).float().mean())])


def test_a_source_with_no_frames_for_a_slot_is_named(packed):
    path = packed("lerobot_v3_images")
    # 8 ranks: episode 1 (7 frames) gives rank 0 nothing (7 // 8 = 0 frames per rank).
    m = mix(sources(path, 0, 8, groups=([1], [0, 2, 3])), [0.5, 0.5], num_samples=80)
    with pytest.raises(ValueError, match=r"dataset 0 \(.*lerobot_v3_images.*\) has no samples for rank 0 worker 0 of 1"):
        list(m)


def test_weights_and_epoch_reach_persistent_workers(packed):
    from torch.utils.data import DataLoader

    path = packed("lerobot_v3_images")
    m = mix(sources(path), [1.0, 0.0], num_samples=40)
    loader = DataLoader(m, batch_size=4, num_workers=2, persistent_workers=True)
    drawn = lambda: torch.cat([b["dataset_index"] for b in loader]).tolist()
    assert drawn() == [0] * 40
    m.set_weights([0.0, 1.0])
    m.set_epoch(1)
    assert drawn() == [1] * 40
    m.set_weights([0.5, 0.5])
    m.set_epoch(2)
    got = [int(x) for b in loader for x in uid(b)]
    fresh = mix(sources(path), [0.5, 0.5], num_samples=40)  # the same epoch through fresh workers
    fresh.set_epoch(2)
    assert got == [int(x) for b in DataLoader(fresh, batch_size=4, num_workers=2) for x in uid(b)]
    assert len(set(got)) > 2  # both sources drawn, not a degenerate order
