"""Feature renaming per source (reader/meta.py, reader/dataset.py) and the mixture's key checks
(reader/mixspec.py): shapes and windows in seconds must agree; each source resolves seconds with its fps."""

import numpy as np
import pytest
import torch

from lerobot_wds.reader import LeRobotShardDataset, mix

LENGTHS = {"lerobot_v3_av1": [45, 80, 12, 60, 90, 33], "lerobot_v3_images": [20, 7, 35, 18]}
FPS = {"lerobot_v3_av1": 30, "lerobot_v3_images": 10}
RENAME = {"observation.images.front": "observation.images.top", "action": "act"}


def test_renamed_samples_equal_stored_ones(packed):
    path = packed("lerobot_v3_images")
    plain = LeRobotShardDataset(path, episodes=[1], shuffle=False,
                                delta_timestamps={"action": [0.0, 0.1], "observation.images.front": [-0.1, 0.0]})
    renamed = LeRobotShardDataset(path, episodes=[1], shuffle=False, rename=RENAME,
                                  delta_timestamps={"act": [0.0, 0.1], "observation.images.top": [-0.1, 0.0]})
    names = {**RENAME, **{f"{k}_is_pad": f"{v}_is_pad" for k, v in RENAME.items()}}
    n = 0
    for a, b in zip(plain, renamed, strict=True):
        assert set(b) == {names.get(k, k) for k in a}
        for k, v in a.items():
            w = b[names.get(k, k)]
            assert torch.equal(v, w) if isinstance(v, torch.Tensor) else v == w, k
        n += 1
    assert n == 7
    m = renamed.meta
    assert m.video_keys == ["observation.images.top"] and "observation.images.front" not in m.features
    assert m.camera_keys == ["observation.images.top", "observation.images.gripper"]
    assert np.array_equal(m.stats["act"]["mean"], plain.meta.stats["action"]["mean"])
    assert list(renamed.delta_indices) == ["act", "observation.images.top"]


def test_rename_errors(packed):
    path = packed("lerobot_v3_images")
    with pytest.raises(ValueError, match=r"lerobot_v3_images.*rename key 'actions' is not a feature; available: .*action"):
        LeRobotShardDataset(path, rename={"actions": "act"})
    with pytest.raises(ValueError, match=r"two features the name\(s\) \['observation.state'\]"):
        LeRobotShardDataset(path, rename={"action": "observation.state"})
    with pytest.raises(ValueError, match=r"delta_timestamps key 'action' is not a feature.*available: .*act"):
        LeRobotShardDataset(path, rename={"action": "act"}, delta_timestamps={"action": [0.0]})


def both(av1_kw=None, img_kw=None, **kw):
    def make(packed):
        a = LeRobotShardDataset(packed("lerobot_v3_av1"), **{**kw, **(av1_kw or {})})
        b = LeRobotShardDataset(packed("lerobot_v3_images"), **{**kw, **(img_kw or {})})
        return [a, b]
    return make


# The fixtures' state/action are 6-d (av1) and 4-d (images); renaming one side keeps them apart.
APART = {"action": "action6", "observation.state": "state6"}


def test_shape_mismatch_names_key_and_sources(packed):
    with pytest.raises(ValueError, match=r"key 'observation.state' differs.*lerobot_v3_av1\d*, fps 30\): \('float32', \(6,\).*lerobot_v3_images\d*, fps 10\): \('float32', \(4,\)"):
        mix(both()(packed))
    with pytest.raises(ValueError, match=r"key 'frame_index' differs.*window length differ"):
        mix(both({"rename": APART, "delta_timestamps": {"frame_index": [0.0, 0.1]}})(packed))


def test_windows_over_other_seconds_are_refused(packed):
    # Deltas written as k / 30 suit the 30 fps source only: at 10 fps, 1/30 s is no frame step.
    with pytest.raises(ValueError, match=r"frame_index.*not a multiple of 1/fps \(fps=10\)"):
        both({"rename": APART}, delta_timestamps={"frame_index": [0.0, 1 / 30]})(packed)
    # Same window length, other seconds: one frame of each (1/30 s vs 0.1 s).
    with pytest.raises(ValueError, match=r"key 'frame_index'.*cover different seconds"):
        mix(both({"rename": APART, "delta_timestamps": {"frame_index": [0.0, 1 / 30]}},
                 {"delta_timestamps": {"frame_index": [0.0, 0.1]}})(packed))


def test_seconds_resolve_with_each_sources_fps(packed):
    deltas = [-0.2, 0.0, 0.2]  # frames [-6, 0, 6] at 30 fps, [-2, 0, 2] at 10 fps
    srcs = both({"rename": APART}, delta_timestamps={"frame_index": deltas}, seed=1, episode_pool_size=2)(packed)
    m = mix(srcs, [0.5, 0.5], num_samples=60)
    assert "action6" not in m.keys and "action" not in m.keys and "frame_index_is_pad" in m.keys
    seen = set()
    for item in m:
        name = ["lerobot_v3_av1", "lerobot_v3_images"][int(item["dataset_index"])]
        fps, length = FPS[name], LENGTHS[name][int(item["episode_index"])]
        f = int(item["timestamp"] * fps + 0.5)  # the frame itself (frame_index is windowed)
        raw = f + np.round(np.array(deltas) * fps).astype(int)
        assert item["frame_index"].tolist() == np.clip(raw, 0, length - 1).tolist()
        assert item["frame_index_is_pad"].tolist() == ((raw < 0) | (raw >= length)).tolist()
        seen.add(name)
    assert seen == set(FPS)
