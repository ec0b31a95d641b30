"""packer/mp4.py: a clip written from the sample table decodes like PyAV's remux of the same packets."""

from __future__ import annotations

import io
from pathlib import Path

import av
import torch
from torchcodec.decoders import VideoDecoder

from lerobot_wds.packer.clip import Pkt, _mux
from lerobot_wds.packer.mp4 import box_children, read_moov, write_clip
from lerobot_wds.packer.sampletable import read_sample_table, select_clip

DATA = Path(__file__).parent / "data"
WRIST = DATA / "lerobot_v3_av1/videos/observation.images.wrist/chunk-000/file-000.mp4"


def test_written_clip_decodes_like_pyav_muxed_clip():
    raw = WRIST.read_bytes()
    t = read_sample_table(io.BytesIO(raw))
    start, end, _ = select_clip(t, 4.1667, 12, 30)  # episode 2: 12 frames, odd keyframe spacing
    datas = [raw[o : o + n] for o, n in zip(t.offset[start:end].tolist(), t.size[start:end].tolist())]
    ours = write_clip(t.duration[start:end], t.size[start:end], t.key[start:end], b"".join(datas),
                      t.timescale, t.stsd, t.tkhd_tail)
    base = int(t.dts[start])
    pkts = [Pkt(int(d) - base, int(d) - base, bool(k), int(u), b)
            for d, k, u, b in zip(t.dts[start:end], t.key[start:end], t.duration[start:end], datas)]
    with av.open(str(WRIST)) as c:
        theirs = _mux(c.streams.video[0], pkts)
    a, b = VideoDecoder(ours, seek_mode="exact"), VideoDecoder(theirs, seek_mode="exact")
    assert len(a) == len(b) == 12
    fa, fb = a.get_frames_in_range(0, 12), b.get_frames_in_range(0, 12)
    assert torch.equal(fa.data, fb.data) and fa.pts_seconds.tolist() == fb.pts_seconds.tolist()
    with av.open(io.BytesIO(ours)) as c:
        s = c.streams.video[0]
        keys = [bool(p.is_keyframe) for p in c.demux(s) if p.size]
        assert s.time_base.denominator == t.timescale and s.codec_context.codec.canonical_name == "av1"
    assert keys == t.key[start:end].tolist() and not all(keys)


def test_box_walk_finds_the_moov_and_its_track():
    moov = read_moov(io.BytesIO(WRIST.read_bytes()))
    top = box_children(moov)
    assert b"mvhd" in top and len(top[b"trak"]) == 1
    assert read_moov(io.BytesIO(b"\0\0\0\x10ftypisom\0\0\0\0")) is None
