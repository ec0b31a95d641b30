"""packer/clip.py: clips cut by remux decode bit-identical to the source at the episode's timestamps."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torchcodec.decoders import VideoDecoder

from lerobot_wds.packer.clip import ClipCutter, ClipError, ClipRequest
from lerobot_wds.packer.sampletable import read_sample_table
from lerobot_wds.packer.source import open_source
from testkit.synthetic import write_dataset

DATA = Path(__file__).parent / "data"


def _check_bit_exact(root: Path, path: str | None = None) -> list[tuple[int, int, int]]:
    """Cut every episode of every camera, compare every frame with the source; returns (ep, lead_in, n).

    ``path`` is "table" or "demux" to assert (or, for "demux", force) which way clips are cut."""
    source = open_source(str(root))
    seen = []
    for key in source.video_keys:
        by_file: dict[str, list] = {}
        for e in source.episodes:
            by_file.setdefault(e.videos[key].path, []).append(e)
        for rel, eps in by_file.items():
            cutter = ClipCutter(source.path(rel), rel, source.fps)
            if path == "table":
                assert cutter._table is not None, rel
            elif path == "demux":
                cutter._table = None
            src = VideoDecoder(source.path(rel), seek_mode="exact")
            for e in eps:
                ref = e.videos[key]
                data, info = cutter.cut(ClipRequest(e.episode_index, ref.from_timestamp, e.length))
                clip = VideoDecoder(data, seek_mode="exact")
                start = round(ref.from_timestamp * source.fps)
                want = src.get_frames_at([start + i for i in range(e.length)]).data
                got = clip.get_frames_at([info.lead_in + i for i in range(e.length)]).data
                assert torch.equal(want, got), f"{rel} episode {e.episode_index}: pixels differ"
                assert len(clip) == info.num_frames >= info.lead_in + e.length
                assert info.reencoded is False and (info.height, info.width) == tuple(want.shape[-2:])
                seen.append((e.episode_index, info.lead_in, info.num_frames))
            cutter.close()
    return seen


@pytest.mark.parametrize("path", ["table", "demux"])
@pytest.mark.parametrize("fixture", ["lerobot_v3_av1", "lerobot_v3_images"])
def test_fixture_clips_bit_exact_every_frame(fixture, path):
    seen = _check_bit_exact(DATA / fixture, path)
    # lerobot starts every episode on a keyframe: no lead-in anywhere.
    assert seen and all(lead_in == 0 for _, lead_in, _ in seen)


@pytest.mark.parametrize("codec", ["av1", "h264"])
def test_unaligned_episodes_get_a_lead_in_and_stay_bit_exact(tmp_path, codec):
    root = write_dataset(tmp_path / codec, episodes=[13, 7, 22, 9, 10], cameras={"cam": (32, 48)},
                         codec=codec, gop=5, keyframe_aligned=False)
    seen = _check_bit_exact(root, "table" if codec == "av1" else None)
    assert any(lead_in > 0 for _, lead_in, _ in seen), seen


def test_clip_timestamps_start_at_zero_and_bytes_are_bitexact(tmp_path):
    import av

    source = open_source(str(DATA / "lerobot_v3_av1"))
    e = source.episodes[1]
    ref = e.videos["observation.images.wrist"]
    a = ClipCutter(source.path(ref.path), ref.path, 30).cut(ClipRequest(1, ref.from_timestamp, e.length))[0]
    b = ClipCutter(source.path(ref.path), ref.path, 30).cut(ClipRequest(1, ref.from_timestamp, e.length))[0]
    assert a == b and b"Lavf" not in a
    import io

    with av.open(io.BytesIO(a)) as c:
        pkts = [p for p in c.demux(video=0) if p.size]
        assert pkts[0].dts == 0 and pkts[0].is_keyframe
        assert c.streams.video[0].time_base == av.open(source.path(ref.path)).streams.video[0].time_base


def test_video_shorter_than_episode_names_episode_and_file():
    source = open_source(str(DATA / "lerobot_v3_images"))
    e = source.episodes[3]  # last 18 frames of the only mp4
    ref = e.videos["observation.images.front"]
    cutter = ClipCutter(source.path(ref.path), ref.path, source.fps)
    with pytest.raises(ClipError, match=r"episode 3: .*file-000\.mp4.*shorter than its episode"):
        cutter.cut(ClipRequest(3, ref.from_timestamp, e.length + 5))


def test_truncated_mp4_names_the_file(tmp_path):
    src = DATA / "lerobot_v3_av1/videos/observation.images.top/chunk-000/file-001.mp4"
    bad = tmp_path / "file-001.mp4"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(ClipError, match=r"file-001\.mp4.*(damaged|truncated|shorter)"):
        ClipCutter(str(bad), str(bad), 30).cut(ClipRequest(1, 0.0, 80))
    shutil.rmtree(tmp_path)


def test_local_clip_parts_equal_the_file_object_path(tmp_path):
    """Local files: the clip's packets come as a view of the cutter's read buffer, byte-equal to
    reading through a file object (the remote path); a file rewritten in place is probed again."""
    src = DATA / "lerobot_v3_av1/videos/observation.images.top/chunk-000"
    path = tmp_path / "file.mp4"
    path.write_bytes((src / "file-000.mp4").read_bytes())
    local = ClipCutter(str(path), "file.mp4", 30)
    parts, info = local.cut_parts(ClipRequest(0, 0.0, 45))
    assert any(isinstance(p, memoryview) for p in parts)
    remote = ClipCutter(open(path, "rb"), "file.mp4", 30, raw=open(path, "rb"))
    data, info_r = remote.cut(ClipRequest(0, 0.0, 45))
    assert b"".join(parts) == data and info == info_r
    del parts
    local.close(), remote.close()
    path.write_bytes((src / "file-001.mp4").read_bytes())
    again = ClipCutter(str(path), "file.mp4", 30)
    with open(path, "rb") as f:
        assert len(again._table.dts) == len(read_sample_table(f).dts) != len(local._table.dts)
    again.close()


def test_read_buffer_is_handed_on_only_when_no_clip_views_it():
    """A closed cutter's buffer goes to the next cutter, unless clip parts still view it."""
    src = DATA / "lerobot_v3_av1/videos/observation.images.top/chunk-000"
    a = ClipCutter(str(src / "file-000.mp4"), "file-000.mp4", 30)
    parts, _ = a.cut_parts(ClipRequest(0, 0.0, 45))
    kept = b"".join(parts)
    buf = a._buf
    a.close()  # parts still view buf: it must not be reused
    b = ClipCutter(str(src / "file-001.mp4"), "file-001.mp4", 30)
    assert b._buf is not buf
    b.cut_parts(ClipRequest(1, 0.0, 80))
    assert b"".join(parts) == kept
    del parts
    b.close()  # no views left: the next cutter gets b's buffer
    c = ClipCutter(str(src / "file-000.mp4"), "file-000.mp4", 30)
    assert len(c._buf) > 0
    c.close()
