"""reader/transitions.py and reader/collate.py: transitions checked against the frame table and
lerobot's decoded frames; episode ends; numpy batches through DataLoader workers; resume; mixing."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from lerobot_wds.reader import LeRobotTransitions, mix, numpy_collate
from reader_helpers import DATA, assert_resumes, expected


def frame_table(name):
    """The source dataset's data/ parquet rows in global ``index`` order."""
    files = sorted((DATA / name / "data").rglob("*.parquet"))
    t = pa.concat_tables([pq.read_table(f) for f in files])
    return t.sort_by("index").to_pydict()


@pytest.mark.parametrize("name", ["lerobot_v3_av1", "lerobot_v3_images"])
def test_transitions_match_frame_table_and_episode_ends(packed, name):
    table = frame_table(name)
    ep, state, action = table["episode_index"], np.asarray(table["observation.state"]), np.asarray(table["action"])
    n = len(ep)
    items = list(LeRobotTransitions(packed(name), seed=2, episode_pool_size=3))
    assert sorted(int(x["index"]) for x in items) == list(range(n))
    for x in items:
        i = int(x["index"])
        last = i == n - 1 or ep[i + 1] != ep[i]
        j = i if last else i + 1
        assert bool(x["done"]) == last, i
        assert np.array_equal(x["obs"]["observation.state"].numpy(), state[i])
        assert np.array_equal(x["next_obs"]["observation.state"].numpy(), state[j])
        assert np.array_equal(x["action"].numpy(), action[i])
        assert "reward" not in x and set(x["obs"]) == set(x["next_obs"])
    assert sum(bool(x["done"]) for x in items) == len(set(ep))


def test_camera_obs_are_lerobots_frames(packed):
    # next_obs of frame i is LeRobotDataset[i + 1]'s frame (or frame i itself at an episode end).
    js, npz = expected("lerobot_v3_av1", "plain")
    want = set(js["indices"])
    ends = {44, 124, 136, 196, 286, 319}
    items = {int(x["index"]): x for x in LeRobotTransitions(packed("lerobot_v3_av1"), shuffle=False, episodes=[0, 2, 5])}
    checked = 0
    for i, x in items.items():
        if i not in want:
            continue
        j = i if i in ends else i + 1
        for cam in ("observation.images.top", "observation.images.wrist"):
            assert np.array_equal(x["obs"][cam].numpy(), npz[f"{i}/{cam}"])
            if j in want:
                assert np.array_equal(x["next_obs"][cam].numpy(), npz[f"{j}/{cam}"]), (i, cam)
                checked += 1
    assert checked >= 14  # pairs (0,1), (1,2), (43,44), (44,44), (125,126), ..., (319,319)


def test_numpy_batches_through_workers(packed):
    ds = LeRobotTransitions(packed("lerobot_v3_images"), delta_timestamps={"action": [0.0, 0.1, 0.2]})
    batches = list(DataLoader(ds, batch_size=8, num_workers=2, collate_fn=numpy_collate))
    b = batches[0]
    assert isinstance(b["obs"]["observation.images.front"], np.ndarray)
    assert b["obs"]["observation.images.front"].shape == (8, 3, 72, 96)
    assert b["next_obs"]["observation.images.gripper"].dtype == np.float32
    assert b["action"].shape == (8, 3, 4) and b["action_is_pad"].shape == (8, 3)
    assert b["done"].dtype == np.bool_ and b["done"].shape == (8,)
    assert isinstance(b["task"], list) and isinstance(b["task"][0], str)
    assert not any(isinstance(v, torch.Tensor) for v in b.values())
    assert sum(int(x["done"].sum()) for x in batches) == 4  # one last frame per episode
    assert sorted(np.concatenate([x["index"] for x in batches]).tolist()) == list(range(80))


def test_numpy_collate_errors():
    with pytest.raises(ValueError, match=r"batch\['a'\] has per-sample shapes \[\(2,\), \(3,\)\]"):
        numpy_collate([{"a": torch.zeros(2)}, {"a": torch.zeros(3)}])
    with pytest.raises(ValueError, match=r"batch\[1\] has keys \['b'\]"):
        numpy_collate([{"a": 1}, {"b": 1}])


def test_transitions_resume_and_mix(packed):
    path = packed("lerobot_v3_images")
    assert_resumes(lambda: LeRobotTransitions(path, seed=4, episode_pool_size=2), 11)
    a = LeRobotTransitions(path, episodes=[0, 1], seed=1)
    b = LeRobotTransitions(path, episodes=[2, 3], seed=2)
    items = list(mix([a, b], [0.5, 0.5], num_samples=20))
    assert len(items) == 20 and {int(x["dataset_index"]) for x in items} == {0, 1}
    assert set(items[0]["obs"]) == {"observation.images.front", "observation.images.gripper", "observation.state"}


def test_transition_errors(packed):
    path = packed("lerobot_v3_images")
    with pytest.raises(ValueError, match=r"delta_timestamps on observation keys \['observation.state'\]"):
        LeRobotTransitions(path, delta_timestamps={"observation.state": [0.0]})
    with pytest.raises(ValueError, match=r"transition key 'observation.depth' is not a feature; available: "):
        LeRobotTransitions(path, obs_keys=["observation.depth"])
    with pytest.raises(ValueError, match=r"reward_key 'next.reward' is not a feature"):
        LeRobotTransitions(path, reward_key="next.reward")
    renamed = LeRobotTransitions(path, rename={"observation.state": "observation.joints"}, obs_keys=["observation.joints"],
                                 reward_key="index", episodes=[1], shuffle=False)
    x = next(iter(renamed))
    assert set(x["obs"]) == {"observation.joints"} and int(x["reward"]) == 20  # any column can serve as reward
