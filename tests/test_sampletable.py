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


def _box_at(data: bytes, path: list[bytes]) -> int:
    """Offset of the box at ``path`` (e.g. [b"moov", b"trak", ...]) in an mp4's bytes."""
    import struct

    start, end = 0, len(data)
    for kind in path:
        i = start
        while i + 8 <= end:
            size, k = struct.unpack(">I4s", data[i : i + 8])
            if k == kind:
                break
            i += size
        else:
            raise KeyError(kind)
        start, end = i + 8, i + size
    return start - 8


_STBL = [b"moov", b"trak", b"mdia", b"minf", b"stbl"]


def _set(box: bytes, at: int, value: int, fmt: str = ">I"):
    def edit(b: bytearray) -> None:
        import struct

        o = _box_at(bytes(b), _STBL + [box]) + at
        b[o : o + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return edit


def _both(*edits):
    def edit(b: bytearray) -> None:
        for e in edits:
            e(b)
    return edit


def _samples_reversed(b: bytearray) -> None:
    """The same samples stored last first, each its own chunk: a legal file that FFmpeg reads as
    the original, whose samples are not in file order (a clip is cut as one span of the file)."""
    import io
    import struct

    from lerobot_wds.packer import mp4

    t = read_sample_table(io.BytesIO(bytes(b)))
    samples = [bytes(b[o : o + n]) for o, n in zip(t.offset.tolist(), t.size.tolist())]
    head, _, moov = mp4.clip_parts(t.duration, t.size, t.key, b"", t.timescale, t.stsd, t.tkhd_tail)
    ftyp = head[:-8]
    offsets, at = [0] * len(samples), len(ftyp) + 8
    for i in reversed(range(len(samples))):
        offsets[i], at = at, at + len(samples[i])
    one_chunk = (mp4._full(b"stsc", 0, 0, struct.pack(">I3I", 1, 1, len(samples), 1)),
                 mp4._full(b"stco", 0, 0, struct.pack(">II", 1, len(ftyp) + 8)))
    per_sample = (mp4._full(b"stsc", 0, 0, struct.pack(">I3I", 1, 1, 1, 1)),
                  mp4._full(b"stco", 0, 0, struct.pack(">I", len(samples)), np.array(offsets, ">u4").tobytes()))
    grow = sum(map(len, per_sample)) - sum(map(len, one_chunk))
    moov = bytearray(moov.replace(one_chunk[0], per_sample[0]).replace(one_chunk[1], per_sample[1]))
    for kind in _STBL:  # the boxes around stbl grow with it
        i = moov.find(kind) - 4
        moov[i : i + 4] = struct.pack(">I", struct.unpack(">I", moov[i : i + 4])[0] + grow)
    mdat = struct.pack(">I", at - len(ftyp)) + b"mdat" + b"".join(reversed(samples))
    b[:] = ftyp + mdat + bytes(moov)


@pytest.mark.parametrize("edit", [
    _set(b"stts", 16, 0x7FFFFFFF),  # one run claims 2**31 samples
    _set(b"stts", 12, 0x7FFFFFF),  # 2**27 runs in a box of a few
    _both(_set(b"stsz", 12, 100), _set(b"stsz", 16, 0x9FFFFFFF)),  # a fixed size, and 2.7e9 samples of it
    _set(b"stco", 12, 0x7FFFFFF),
    _set(b"stco", 16, 0x7FFFFFF0),  # a chunk past the file's end
    _set(b"stss", 20, 1000),  # a keyframe number past the last sample
    _set(b"stsc", 16, 1000),  # the first run starting past the last chunk
    _both(_set(b"stsz", 12, 1), _set(b"stsz", 16, 50_000), _set(b"stts", 12, 1), _set(b"stts", 16, 50_000)),
    _samples_reversed,
], ids=["stts run", "stts runs", "stsz fixed, count", "stco count", "stco past end", "stss past end",
        "stsc past end", "1-byte samples", "samples out of file order"])
def test_a_table_that_does_not_hold_together_is_left_to_ffmpeg(tmp_path, edit):
    """Counts no box or file could hold, numbers past the end, samples out of file order: no table
    (the packer then demuxes with FFmpeg), without allocating what the counts claim."""
    import io
    import tracemalloc

    path = DATA / "lerobot_v3_av1/videos/observation.images.wrist/chunk-000/file-000.mp4"
    data = bytearray(path.read_bytes())
    edit(data)
    if edit is _samples_reversed:  # legal: FFmpeg demuxes the same packets
        with av.open(io.BytesIO(bytes(data))) as c, av.open(str(path)) as ref:
            assert [bytes(p) for p in c.demux(video=0) if p.size] == [bytes(p) for p in ref.demux(video=0) if p.size]
    tracemalloc.start()
    try:
        assert read_sample_table(io.BytesIO(bytes(data))) is None
        assert tracemalloc.get_traced_memory()[1] < max(2 * len(data), 256 << 10)  # never more than the file
    finally:
        tracemalloc.stop()


def test_a_moov_claiming_more_than_the_file_is_not_read():
    import io
    import struct

    from lerobot_wds.packer.mp4 import read_moov

    path = DATA / "lerobot_v3_av1/videos/observation.images.wrist/chunk-000/file-000.mp4"
    data = bytearray(path.read_bytes())
    o = _box_at(bytes(data), [b"moov"])
    head = struct.pack(">I4sQ", 1, b"moov", 2**62)  # a 64-bit size of 2**62
    assert read_moov(io.BytesIO(bytes(data[:o]) + head + bytes(data[o + 8 :]))) is None
    assert read_moov(io.BytesIO(bytes(data[: o + 100]))) is None  # truncated inside moov
    assert read_moov(io.BytesIO(bytes(data))) is not None
