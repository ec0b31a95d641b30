"""packer/mp4.py + packer/packets.py: the index-read, self-muxed clip equals PyAV's demux + mux."""

from __future__ import annotations

import io
from pathlib import Path

import av
import torch
from torchcodec.decoders import VideoDecoder

from packer.clip import _mux
from packer.mp4 import sample_entry_of, write_clip
from packer.packets import open_index, read_span

DATA = Path(__file__).parent / "data"
WRIST = DATA / "lerobot_v3_av1/videos/observation.images.wrist/chunk-000/file-000.mp4"


def test_index_window_equals_demuxed_packets():
    with av.open(str(WRIST)) as c:
        s = c.streams.video[0]
        demuxed = [(p.pts, p.dts, bool(p.is_keyframe), p.duration, bytes(p)) for p in c.demux(s) if p.size]
    with av.open(str(WRIST)) as c, open(WRIST, "rb") as f:
        index = open_index(c, c.streams.video[0])
        assert index is not None
        tb = float(c.streams.video[0].time_base)
        window = index.window(1.5 + 1 / 60, 1.5 + 79.5 / 30)  # episode 1: 80 frames from 1.5 s
        datas = read_span(f, window, str(WRIST))
    got = [(p.pts, p.dts, p.key, p.duration, d) for p, d in zip(window, datas)]
    first = round(1.5 / tb)
    start = next(i for i, p in enumerate(demuxed) if p[0] == first)
    assert got == demuxed[start : start + 80]


def test_written_clip_decodes_like_pyav_muxed_clip():
    with av.open(str(WRIST)) as c, open(WRIST, "rb") as f:
        stream = c.streams.video[0]
        index = open_index(c, stream)
        window = index.window(4.1667, 4.1667 + 11.5 / 30)  # episode 2: 12 frames, odd keyframe spacing
        datas = read_span(f, window, str(WRIST))
        base = window[0].dts
        clip = [p._replace(pts=p.pts - base, dts=p.dts - base) for p in window]
        ours = write_clip(clip, datas, sample_entry_of(f))
        theirs = _mux(stream, window, datas)
    a, b = VideoDecoder(ours, seek_mode="exact"), VideoDecoder(theirs, seek_mode="exact")
    assert len(a) == len(b) == 12
    assert torch.equal(a.get_frames_in_range(0, 12).data, b.get_frames_in_range(0, 12).data)
    assert a.get_frames_in_range(0, 12).pts_seconds.tolist() == b.get_frames_in_range(0, 12).pts_seconds.tolist()
    with av.open(io.BytesIO(ours)) as c:
        keys = [bool(p.is_keyframe) for p in c.demux(video=0) if p.size]
    assert keys == [p.key for p in window] and not all(keys)


def test_truncated_span_raises_eof():
    with av.open(str(WRIST)) as c:
        window = open_index(c, c.streams.video[0]).window(0.0, 1.0)
    short = io.BytesIO(WRIST.read_bytes()[: window[-1].pos])
    try:
        read_span(short, window, "x.mp4")
    except EOFError as e:
        assert "x.mp4: file ends at byte" in str(e)
    else:
        raise AssertionError("a short file must raise EOFError")
