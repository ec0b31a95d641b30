"""packer/sampletable.py: the mp4 sample table read with numpy equals FFmpeg's demuxed packets."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from lerobot_wds.packer.sampletable import read_sample_table, select_clip
from testkit.synthetic import write_dataset

DATA = Path(__file__).parent / "data"
MP4S = sorted((DATA / "lerobot_v3_av1/videos").rglob("*.mp4")) + sorted((DATA / "lerobot_v3_images/videos").rglob("*.mp4"))


@pytest.mark.parametrize("path", MP4S, ids=lambda p: "/".join(p.parts[-4:]))
def test_table_equals_demuxed_packets(path):
    with open(path, "rb") as f:
        t = read_sample_table(f)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pk = [(p.pts, p.dts, p.pos, p.size, bool(p.is_keyframe), p.duration) for p in c.demux(s) if p.size]
        assert s.time_base.denominator == t.timescale
    got = list(zip(t.dts.tolist(), t.dts.tolist(), t.offset.tolist(), t.size.tolist(), t.key.tolist(), t.duration.tolist()))
    assert got == pk


def test_select_clip_frames_lead_in_and_refusals():
    path = DATA / "lerobot_v3_av1/videos/observation.images.wrist/chunk-000/file-000.mp4"
    with open(path, "rb") as f:
        t = read_sample_table(f)
    assert select_clip(t, 1.5, 80, 30) == (45, 125, 0)  # episode 1 starts on a keyframe
    start, end, lead_in = select_clip(t, 48 / 30, 10, 30)  # frame 48 is not a keyframe (g=2 from 45)
    assert (start, end, lead_in) == (47, 58, 1) and t.key[47] and not t.key[48]
    assert select_clip(t, 4.1667, 12 + 1, 30) is None  # one frame past the file's end
    assert np.all(np.diff(t.dts) > 0)


def test_b_frame_streams_are_left_to_ffmpeg(tmp_path):
    root = write_dataset(tmp_path / "h264", episodes=[12, 9], cameras={"cam": (32, 48)}, codec="h264", gop=4)
    with open(root / "videos/cam/chunk-000/file-000.mp4", "rb") as f:
        assert read_sample_table(f) is None  # ctts (composition offsets) present
