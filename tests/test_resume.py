"""Exact mid-epoch resume: stop after k items, resume in a fresh dataset/loader, nothing repeated or dropped."""

import pytest
from torchdata.stateful_dataloader import StatefulDataLoader

from lerobot_wds.reader import LeRobotShardDataset
from reader_helpers import assert_resumes

WINDOWS = {"action": [k / 10 for k in range(16)], "observation.images.front": [-0.1, 0.0]}


def make_dataset(path, rank=0, world_size=1, epoch=1, **kw):
    ds = LeRobotShardDataset(path, rank=rank, world_size=world_size, seed=7, episode_pool_size=2, **kw)
    ds.set_epoch(epoch)
    return ds


@pytest.mark.parametrize("k", [0, 1, 13, 39, 40])
@pytest.mark.parametrize("rank", [0, 1])
def test_dataset_alone(packed, k, rank):
    path = packed("lerobot_v3_images")
    assert_resumes(lambda: make_dataset(path, rank, 2, delta_timestamps=WINDOWS), k)


@pytest.mark.parametrize("k", [1, 4, 9])
@pytest.mark.parametrize("num_workers", [0, 2])
def test_stateful_dataloader(packed, k, num_workers):
    path = packed("lerobot_v3_images")
    for rank in (0, 1):
        assert_resumes(lambda: StatefulDataLoader(make_dataset(path, rank, 2), batch_size=4, num_workers=num_workers), k)


def test_resume_does_not_reread(packed):
    path = packed("lerobot_v3_av1")
    full = make_dataset(path, shuffle=False)
    list(full)
    first = make_dataset(path, shuffle=False)
    it = iter(first)
    for _ in range(200):  # past episodes 0..2 (137 frames) and into episode 3
        next(it)
    resumed = make_dataset(path, shuffle=False)
    resumed.load_state_dict(first.state_dict())
    assert len(list(resumed)) == 120
    read_full, read_resumed = full.io_stats()["bytes_fetched"], resumed.io_stats()["bytes_fetched"]
    assert read_resumed < 0.8 * read_full


def test_state_with_other_settings_is_refused(packed):
    path = packed("lerobot_v3_images")
    state = make_dataset(path).state_dict()
    with pytest.raises(ValueError, match="seed=7, 8"):
        LeRobotShardDataset(path, seed=8, episode_pool_size=2).load_state_dict(state)


def test_set_epoch_keeps_state_of_that_epoch(packed):
    path = packed("lerobot_v3_images")
    first = make_dataset(path, epoch=3)
    it = iter(first)
    head = [int(next(it)["index"]) for _ in range(10)]
    resumed = make_dataset(path, epoch=0)
    resumed.load_state_dict(first.state_dict())
    resumed.set_epoch(3)  # a training loop's set_epoch at the top of the resumed epoch
    rest = [int(x["index"]) for x in resumed]
    assert sorted(head + rest) == list(range(80))
    resumed.set_epoch(4)  # the next epoch starts from its beginning
    assert len(list(resumed)) == 80


def test_state_from_another_pack_is_refused(packed, tmp_path):
    from reader_helpers import pack_fixture

    from lerobot_wds import LeRobotShardDataset

    one = LeRobotShardDataset(packed("lerobot_v3_av1"), shuffle=True, seed=3)
    it = iter(one)
    next(it)
    state = one.state_dict()
    other = LeRobotShardDataset(pack_fixture("lerobot_v3_av1", tmp_path / "big", shard_size=1 << 40), shuffle=True, seed=3)
    with pytest.raises(ValueError, match="taken on another pack"):
        other.load_state_dict(state)
    LeRobotShardDataset(packed("lerobot_v3_av1"), shuffle=True, seed=3).load_state_dict(state)  # same pack: accepted


@pytest.mark.parametrize("yielded", [-1, 41, 10**18, "3", 2.0, True])
def test_a_count_the_slot_cannot_have_yielded_is_refused(packed, yielded):
    """Rank 0 of 2 yields 40 of the fixture's 80 frames an epoch: a state saying otherwise is
    damaged, and resuming from it would drop samples (or, huge, spend its count skipping)."""
    path = packed("lerobot_v3_images")
    state = make_dataset(path, 0, 2).state_dict()
    state["yielded"] = yielded
    ds = make_dataset(path, 0, 2)
    ds.load_state_dict(state)
    with pytest.raises(ValueError, match=rf"says {yielded!r} samples were yielded, but .* yields 40 per epoch"):
        next(iter(ds))
