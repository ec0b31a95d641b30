"""reader/window.py: LeRobot's delta_timestamps rules, without torch or video."""

import numpy as np
import pytest

from lerobot_wds.reader.window import delta_indices, window_indices

FEATURES = ["action", "observation.state", "observation.images.top", "timestamp"]


def test_delta_indices_round_to_frames():
    d = delta_indices({"action": [k / 30 for k in range(16)], "observation.state": [-2 / 30, -1 / 30, 0.0]}, 30, 1e-4, FEATURES)
    assert d["action"].tolist() == list(range(16))
    assert d["observation.state"].tolist() == [-2, -1, 0]
    assert d["action"].dtype == np.int64


def test_delta_off_grid_names_key_and_value():
    with pytest.raises(ValueError, match=r"observation.state.*0.05"):
        delta_indices({"observation.state": [0.05]}, 30, 1e-4, FEATURES)
    # Within tolerance passes.
    assert delta_indices({"action": [1 / 30 + 5e-5]}, 30, 1e-4, FEATURES)["action"].tolist() == [1]


def test_unknown_key_lists_features():
    with pytest.raises(ValueError, match=r"'actions'.*available: action, observation.state"):
        delta_indices({"actions": [0.0]}, 30, 1e-4, FEATURES)


def test_none_is_empty():
    assert delta_indices(None, 30, 1e-4, FEATURES) == {}


@pytest.mark.parametrize("frame", [0, 1, 5, 10, 11])
def test_window_clamps_and_pads(frame):
    deltas = np.array([-3, 0, 2])
    idx, pad = window_indices(frame, 12, deltas)
    raw = frame + deltas
    assert idx.tolist() == [min(max(r, 0), 11) for r in raw]
    assert pad.tolist() == [not 0 <= r < 12 for r in raw]


def test_window_longer_than_episode():
    idx, pad = window_indices(3, 7, np.arange(16))
    assert idx.tolist() == [3, 4, 5, 6] + [6] * 12
    assert pad.tolist() == [False] * 4 + [True] * 12
