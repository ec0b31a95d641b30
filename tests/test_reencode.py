"""``pack --codec``: re-encoded clips read back frame for frame, checked by what the frames show.

Synthetic episodes carry their (episode, frame) index as a block code in every frame
(testkit/synthetic_frames.py), so each sample's frames, window frames included, are checked by
content: the right episode, the right frame, in every codec the packer offers. The reader decodes
re-encoded clips through torchcodec (the shared decoder takes lerobot's own clips only). x265
leaves room for B-frames (at GOP 2 it uses none), so hevc's packets start at a negative decode
timestamp, two frames before their presentation timestamps.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lerobot_wds.reader import LeRobotShardDataset
from testkit.synthetic import read_code, write_dataset

TOP, WRIST = "observation.images.top", "observation.images.wrist"
LENGTHS = [9, 14, 5, 12, 20, 7]
WINDOW = [-0.1, 0.0]  # 3 frames back at 30 fps


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("src") / "ds", episodes=LENGTHS,
                         cameras={TOP: (64, 96), WRIST: (48, 64)}, seed=5)


def codes(frames) -> list[tuple[int, int]]:
    """The codes of (N, 3, H, W) or (3, H, W) uint8 frames."""
    frames = frames if frames.ndim == 4 else frames[None]
    return [read_code(f.permute(1, 2, 0).numpy()) for f in frames]


@pytest.mark.parametrize("codec", ["av1", "h264", "hevc"])
def test_reencoded_clips_read_back_frame_for_frame(source, tmp_path, codec):
    out = tmp_path / codec
    env = {k: v for k, v in os.environ.items() if k != "SVT_LOG"}
    packed = subprocess.run([sys.executable, "-m", "lerobot_wds.packer.cli", "pack", str(source), str(out),
                             "--codec", codec, "--crf", "12", "--shard-size", "20KB", "--no-progress"],
                            capture_output=True, text=True, env=env)
    assert packed.returncode == 0, packed.stderr
    # Only the pack's own lines: SVT-AV1 and x265 would each write a dozen lines a clip to stderr.
    assert "Svt[" not in packed.stderr and "x265 [" not in packed.stderr, packed.stderr
    seen = []
    for s in LeRobotShardDataset(out, delta_timestamps={TOP: WINDOW}, return_uint8=True, seed=1,
                                 episode_pool_size=3):
        ep, f = int(s["episode_index"]), int(s["frame_index"])
        assert codes(s[TOP]) == [(ep, max(f - 3, 0)), (ep, f)], (codec, ep, f)
        assert s[f"{TOP}_is_pad"].tolist() == [f < 3, False]
        assert codes(s[WRIST]) == [(ep, f)], (codec, ep, f)
        seen.append((ep, f))
    assert sorted(seen) == [(e, i) for e, n in enumerate(LENGTHS) for i in range(n)]
