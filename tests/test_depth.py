"""Depth-map cameras (reader/depth.py): 12-bit codes from a real lossless HEVC clip, and their
values. Equality with LeRobotDataset itself, dataset by dataset, is tests_lerobot/test_parity.py's
``test_depth_maps_equal_lerobot`` (it needs lerobot 0.6.1)."""

from __future__ import annotations

import io
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from lerobot_wds.reader import LeRobotShardDataset
from lerobot_wds.reader.depth import DepthClipDecoder, DepthQuantization, dequantize


def _clip(codes: np.ndarray, pix_fmt: str = "gray12le") -> bytes:
    """``codes`` (N, H, W) uint16 < 4096 as lerobot stores a depth camera: HEVC, gray12le, lossless
    (``pix_fmt``: another format FFmpeg converts the codes to)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        s = out.add_stream("libx265", rate=30)
        s.width, s.height, s.pix_fmt = codes.shape[2], codes.shape[1], pix_fmt
        s.options = {"x265-params": "lossless=1:log-level=error", "g": "2"}
        for i, c in enumerate(codes):
            f = av.VideoFrame.from_ndarray(c, format="gray12le").reformat(format=pix_fmt)
            f.pts, f.time_base = i, Fraction(1, 30)
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    return buf.getvalue()


@pytest.fixture(scope="module")
def codes() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 4096, (7, 42, 62)).astype(np.uint16)


def test_decoder_gives_every_frames_codes_forward_and_back(codes):
    clip = _clip(codes)
    dec = DepthClipDecoder(clip)
    assert (dec.width, dec.height, dec.num_frames) == (62, 42, 7)
    for i in range(7):
        got = dec.codes_at(i)
        assert got.dtype == torch.uint16 and tuple(got.shape) == (1, 42, 62)
        assert np.array_equal(got[0].numpy(), codes[i])
    assert np.array_equal(dec.codes_at(2)[0].numpy(), codes[2])  # back: decodes again from the start
    assert np.array_equal(DepthClipDecoder(torch.frombuffer(bytearray(clip), dtype=torch.uint8)).codes_at(6)[0].numpy(),
                          codes[6])


def test_decoder_seeks_to_the_keyframe_before_a_far_frame(codes):
    """The pool starts each episode at a random frame: the decoder seeks to the keyframe at or
    before it (a keyframe at least every 2 frames here) instead of decoding from the first frame,
    and seeks back the same way; every frame still exact."""
    dec = DepthClipDecoder(_clip(codes))
    assert np.array_equal(dec.codes_at(5)[0].numpy(), codes[5]) and dec.decoded <= 2
    for i in (6, 1, 4, 0, 3):
        before = dec.decoded
        assert np.array_equal(dec.codes_at(i)[0].numpy(), codes[i])
        assert dec.decoded - before <= 2, f"frame {i}: {dec.decoded - before} frames decoded"


@pytest.mark.parametrize("pix_fmt", ["gray", "yuv420p", "gray10le"])
def test_a_clip_of_other_than_12_bit_pixels_is_refused(codes, pix_fmt):
    """Any other format would be converted to 12-bit codes it does not hold (8-bit values scaled
    up, say): refused when the clip opens, not handed out as depth."""
    with pytest.raises(ValueError, match=rf"its pixels are {pix_fmt}, not 12-bit depth codes"):
        DepthClipDecoder(_clip(codes, pix_fmt))
    assert DepthClipDecoder(_clip(codes, "yuv420p12le")).codes_at(0).shape == (1, 42, 62)  # lerobot's other format


def test_decoder_errors_are_value_or_index_errors(codes):
    with pytest.raises(ValueError):
        DepthClipDecoder(b"not an mp4 at all" * 100)
    dec = DepthClipDecoder(_clip(codes))
    with pytest.raises(IndexError, match="frame 9 asked for; the clip has 7"):
        dec.codes_at(9)
    with pytest.raises(ValueError):  # the first 3 kB: the header, no frame to scan
        DepthClipDecoder(_clip(codes)[:3000]).codes_at(0)


@pytest.mark.parametrize("use_log", [True, False])
def test_table_maps_codes_between_depth_min_and_depth_max(use_log):
    q = DepthQuantization(depth_min=0.2, depth_max=5.0, shift=0.5, use_log=use_log)
    m, mm = q.table("m"), q.table("mm")
    assert m.dtype == mm.dtype == torch.float32 and len(m) == len(mm) == 1 << 16
    assert math.isclose(m[0].item(), 0.2, rel_tol=1e-6) and math.isclose(m[4095].item(), 5.0, rel_tol=1e-6)
    assert bool((m[1:4096] > m[:4095]).all()) and bool((m[4095:] == m[4095]).all())  # past 4095: clamped
    assert torch.equal(mm, torch.round(m * 1000.0)) and bool((mm == mm.round()).all())
    mid = 0.2 + 2047 * (5.0 - 0.2) / 4095 if not use_log else math.exp(
        math.log(0.7) + 2047 * (math.log(5.5) - math.log(0.7)) / 4095) - 0.5
    assert math.isclose(m[2047].item(), mid, rel_tol=1e-5)
    frames = torch.from_numpy(np.array([[[0, 4095], [2047, 1]]], dtype=np.uint16))
    assert torch.equal(dequantize(frames, m), m[frames.to(torch.int64)])


def test_quantization_read_from_the_feature_info_with_lerobots_defaults():
    assert DepthQuantization.of_feature("d", {"info": {"is_depth_map": True}}) == DepthQuantization(0.01, 10.0, 3.5, True)
    feature = {"info": {"video.depth_min": 0.1, "video.depth_max": 4, "video.use_log": False, "video.shift": None}}
    assert DepthQuantization.of_feature("d", feature) == DepthQuantization(0.1, 4.0, 3.5, False)
    with pytest.raises(ValueError, match=r"depth feature 'd': its quantization needs depth_min < depth_max \(and "
                                         r"depth_min \+ shift > 0 with use_log\)"):
        DepthQuantization.of_feature("d", {"info": {"video.depth_min": 0.0, "video.shift": 0.0}})
    for lie in ({"video.depth_max": "far"}, {"video.depth_min": float("nan")}, {"video.shift": float("nan")},
                {"video.depth_max": float("inf")}, {"video.use_log": "false"}):
        with pytest.raises(ValueError, match=r"depth feature 'd': its info holds a quantization that is not finite numbers"):
            DepthQuantization.of_feature("d", {"info": lie})
    with pytest.raises(ValueError, match=r"depth feature 'd': its quantization needs depth_min < depth_max"):
        DepthQuantization.of_feature("d", {"info": {"video.depth_min": 5.0, "video.depth_max": 1.0}})
    with pytest.raises(ValueError, match=r"depth feature 'd': depth_max=1e\+300 is beyond what float32 holds"):
        DepthQuantization.of_feature("d", {"info": {"video.depth_max": 1e300, "video.use_log": False}})
    with pytest.raises(ValueError, match=r"depth_output_unit='cm'; choose 'mm' or 'm'"):
        DepthQuantization().table("cm")


def test_the_dataset_refuses_a_depth_unit_lerobot_does_not_have(packed):
    """Whether or not the dataset has depth cameras."""
    with pytest.raises(ValueError, match=r"depth_output_unit='cm'; choose 'mm' or 'm'"):
        LeRobotShardDataset(packed("lerobot_v3_images"), depth_output_unit="cm")


def test_a_depth_unit_other_than_mm_or_m_is_refused(packed, tmp_path):
    """lerobot records "mm" or "m"; anything else was read as millimetres. Refused when the manifest
    is read (the manifest's own checks), naming the feature."""
    import json
    import shutil

    from lerobot_wds.format import FormatError

    ds = Path(shutil.copytree(packed("lerobot_v3_images"), tmp_path / "ds"))
    m = json.loads((ds / "manifest.json").read_text())
    m["features"]["observation.images.gripper"]["info"] = {"is_depth_map": True, "depth_unit": "cm"}
    (ds / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(FormatError, match=r"depth feature 'observation.images.gripper' records depth_unit 'cm', "
                                          r"not one of \('mm', 'm'\)"):
        LeRobotShardDataset(str(ds))
