"""lerobot's dataset contract on LeRobotShardDataset: drop_n_last_frames, epochs that advance by
themselves, the data position lerobot-wds train saves, and the meta lerobot reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from lerobot_wds import LeRobotShardDataset, mix
from lerobot_wds.reader.lerobot_train import advance, worker_sizes

DATA = Path(__file__).parent / "data" / "lerobot_v3_av1"
EPISODES = [2, 3]  # 12 + 60 frames


def pairs(loader) -> list[tuple[int, int]]:
    out = []
    for x in loader:
        e, f = x["episode_index"].reshape(-1).tolist(), x["frame_index"].reshape(-1).tolist()
        out.extend(zip(e, f))
    return out


@pytest.fixture(scope="module")
def root(packed):
    return packed("lerobot_v3_av1")


def test_drop_n_last_frames_leaves_out_exactly_what_episode_aware_sampler_never_samples(root):
    ds = LeRobotShardDataset(root, episodes=EPISODES, drop_n_last_frames=7)
    lengths = dict(zip(ds.meta.episodes["episode_index"], ds.meta.episodes["length"]))
    want = {(e, f) for e, n in lengths.items() for f in range(n - 7)}
    got = pairs(ds)
    assert len(ds) == len(got) == len(want) == 5 + 53 and set(got) == want
    ranks = [LeRobotShardDataset(root, episodes=EPISODES, drop_n_last_frames=7, rank=r, world_size=3) for r in range(3)]
    assert [len(r) for r in ranks] == [58 // 3] * 3
    seen = [p for r in ranks for p in pairs(r)]
    assert len(seen) == len(set(seen)) == 3 * (58 // 3) and set(seen) <= want
    with pytest.raises(ValueError, match="drop_n_last_frames=60 leaves no frames"):
        LeRobotShardDataset(root, episodes=[2], drop_n_last_frames=60)


@pytest.mark.parametrize("workers,persistent", [(0, False), (2, False), (2, True)])
def test_epochs_advance_without_set_epoch_and_set_epoch_still_decides(root, workers, persistent):
    ds = LeRobotShardDataset(root, episodes=[2], episode_pool_size=1)
    loader = DataLoader(ds, batch_size=None, num_workers=workers, persistent_workers=persistent)
    first, second = pairs(loader), pairs(loader)
    assert sorted(first) == sorted(second) == [(2, f) for f in range(12)]
    assert first != second
    ds.set_epoch(1)
    assert pairs(loader) == second  # an explicit epoch decides...
    assert pairs(loader) != second  # ...and the next iteration is the one after it
    ds.set_epoch(0)
    assert pairs(loader) == first


def test_mixture_epochs_advance_by_themselves(root):
    m = mix([LeRobotShardDataset(root, episodes=[2]), LeRobotShardDataset(root, episodes=[3])], seed=1)
    first, second = pairs(m), pairs(m)
    assert first != second and len(first) == len(second) == 72
    m.set_epoch(0)
    assert pairs(m) == first


@pytest.mark.parametrize("workers,batch", [(2, 5), (3, 4), (0, 7)])
def test_data_position_from_steps_resumes_a_dataloader_exactly(root, workers, batch):
    """What lerobot-wds train saves: the position after k consumed batches, from k alone. Stopping
    twice (the second time inside the resumed epoch) and resuming covers the epoch exactly once."""
    def run(position=None, take=None):
        ds = LeRobotShardDataset(root, episodes=EPISODES)
        if position is not None:
            epoch, yielded = position
            ds.load_state_dict({**ds.state_dict(), "epoch": epoch, "yielded": yielded, "slot": None})
        out = []
        for i, b in enumerate(DataLoader(ds, batch_size=batch, num_workers=workers)):
            if take is not None and i == take:
                break
            out.append(pairs([b]))
        return out, ds

    whole, ds = run()
    sizes = worker_sizes(ds, workers)
    assert sum(sizes) == 72 and len(whole) == sum(-(-n // batch) for n in sizes)
    k, j = len(whole) // 3, len(whole) // 4
    part1, _ = run(take=k)
    pos1 = advance(0, [0] * len(sizes), k, sizes, batch)
    part2, _ = run(pos1, take=j)
    pos2 = advance(*pos1, j, sizes, batch)
    part3, _ = run(pos2)
    done = [p for b in part1 + part2 + part3 for p in b]
    assert sorted(done) == sorted(p for b in whole for p in b) and len(set(done)) == 72
    assert advance(*pos2, len(part3), sizes, batch) == (1, [0] * len(sizes))
    assert advance(0, [0] * len(sizes), 5 * len(whole) + k, sizes, batch) == (5, pos1[1])


def test_meta_answers_what_lerobot_reads(root):
    ds = LeRobotShardDataset(root, episodes=EPISODES)
    info = json.loads((DATA / "meta" / "info.json").read_text())
    meta = ds.meta
    assert list(meta.features) == list(info["features"])  # info.json order
    assert all(isinstance(f["shape"], tuple) for f in meta.features.values())
    assert meta.camera_keys == meta.video_keys == ["observation.images.top", "observation.images.wrist"]
    assert meta.depth_keys == [] and meta.image_keys == [] and meta.has_language_columns is False
    assert (ds.num_frames, ds.num_episodes, ds.episodes) == (72, 2, EPISODES)
    assert meta.tasks.index == [info_task for info_task in meta.tasks] and len(meta.tasks.index) == 3
    table = meta.episodes
    assert table["episode_index"] == EPISODES and table["length"] == [12, 60]
    assert table["dataset_from_index"] == [125, 137] and table["dataset_to_index"] == [137, 197]
    assert table["tasks"] == [["fold the towel in half"], ["pick up the red cube and place it in the bin"]]
    assert table[1]["dataset_to_index"] == 197
    assert meta.fps == info["fps"] and meta.robot_type == info["robot_type"]
