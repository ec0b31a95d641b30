"""reader/video.py: in-memory clip decode is bit-identical to lerobot's frames; each frame is decoded once and
only the window reach stays decoded."""

import subprocess
import threading

import numpy as np
import pytest
import torch

from lerobot_wds.packer.clip import ClipCutter, ClipRequest
from lerobot_wds.reader.episodes import LoadedEpisode, EpisodeError
from lerobot_wds.format import ShardEpisodeMeta
from lerobot_wds.reader.pool import pool_order
from lerobot_wds.reader.video import EpisodeVideo, planar, to_float

ROOT = "tests/data/lerobot_v3_av1"
TOP = f"{ROOT}/videos/observation.images.top/chunk-000/file-002.mp4"  # episodes 2 (12 frames) and 3 (60)
EXPECTED = np.load("tests/data/expected/lerobot_v3_av1/expected_plain.npz")


def cut_episode3(video: str) -> LoadedEpisode:
    cutter = ClipCutter(video, video, 30)
    clip, info = cutter.cut(ClipRequest(3, 0.4, 60))
    cutter.close()
    meta = ShardEpisodeMeta(1, 3, 60, 137, ("t",), {"observation.images.top": info})
    return LoadedEpisode("shard-000001.tar", meta, {}, {"observation.images.top": clip})


@pytest.fixture(scope="module")
def episode3():
    return cut_episode3(TOP)


@pytest.fixture(scope="module")
def episode3_h264(tmp_path_factory):
    """Episode 3 from the same video re-encoded to h264 (GOP 2): a clip the shared decoder does not
    take, so torchcodec decodes it."""
    out = tmp_path_factory.mktemp("h264") / "file-002.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", TOP, "-c:v", "libx264", "-g", "2", "-bf", "0",
                    "-pix_fmt", "yuv420p", str(out)], check=True, capture_output=True)
    return cut_episode3(str(out))


def test_frames_bit_identical_to_lerobot(episode3):
    video = EpisodeVideo(episode3)
    idx = [0, 1, 2, 15, 18, 33, 39, 44, 51, 52, 58, 59]  # global 137..196
    frames = to_float(video.frames("observation.images.top", np.array(idx)))
    for i, f in zip(idx, frames):
        exp = EXPECTED[f"{137 + i}/observation.images.top"]
        assert f.dtype == torch.float32 and f.shape == exp.shape
        assert np.array_equal(f.numpy(), exp), f"frame {i}"


def test_pool_order_decodes_each_frame_once_with_bounded_memory(episode3):
    """Drawing the episode as the pool does (file order from a random start, wrapping once), with a
    window reaching 3 back and 2 ahead: each frame decoded once but for the window's lead-in at the
    start and the wrap, at most the window reach held between samples, each frame as decoded."""
    cam = "observation.images.top"
    video = EpisodeVideo(episode3, reach={cam: (3, 2)})
    seen = {}
    draws = [5 + f for _, f, _ in pool_order([55], 1, 3)]
    assert draws[0] != 5 and sorted(draws) == list(range(5, 60))  # a random start, every frame once
    for at in draws:
        idx = np.clip(np.arange(at - 3, at + 3), 0, 59)
        got = video.frames(cam, idx, at)
        for i, t in zip(idx, got):
            seen.setdefault(int(i), t)
            assert torch.equal(seen[int(i)], t)
        assert len(video._frames[cam]) <= 3 + 2
        # held as decoded (4:2:0), converted at each use: half an RGB frame's bytes each
        assert all(f.nbytes <= np.prod(f.shape) // 2 for f in video._frames[cam].values())
    assert len(seen) <= video.decoded <= len(seen) + 2 * (3 + 2)  # lead-in at the start and at the wrap
    fresh = EpisodeVideo(episode3).frames(cam, np.arange(60))
    assert all(torch.equal(fresh[i], seen[i]) for i in seen)
    video.close()
    assert not video._frames


def test_no_window_keeps_nothing_and_copies_nothing(episode3):
    cam = "observation.images.top"
    video = EpisodeVideo(episode3, reach={cam: (0, 0)})
    fresh = EpisodeVideo(episode3).frames(cam, np.arange(60))
    for _, f, _ in pool_order([60], 1, 4):
        got = video.frames(cam, np.array([f]), f)
        assert torch.equal(got[0], fresh[f]) and not video._frames[cam]
        got[0].zero_()  # a caller may write into its sample: nothing the video keeps changes
    assert video.decoded == 60
    assert torch.equal(EpisodeVideo(episode3).frames(cam, np.arange(60)), fresh)


def test_to_float_matches_numpy():
    u8 = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16)
    assert np.array_equal(to_float(u8).numpy(), u8.numpy().astype(np.float32) / np.float32(255))


def test_undecodable_clip_names_episode(episode3):
    bad = LoadedEpisode("shard-000004.tar", episode3.meta, {}, {"observation.images.top": b"not an mp4" * 10})
    with pytest.raises(EpisodeError, match=r"shard-000004.tar, episode 3: clip of camera 'observation.images.top'"):
        EpisodeVideo(bad).frames("observation.images.top", np.array([0]))


def test_frames_float_equals_to_float(episode3):
    video = EpisodeVideo(episode3)
    idx = np.array([3, 0, 3, 59])
    a = video.frames_float("observation.images.top", idx)
    b = to_float(EpisodeVideo(episode3).frames("observation.images.top", idx))
    assert a.dtype == torch.float32 and torch.equal(a, b)


@pytest.mark.parametrize("shared", [True, False], ids=["shared decoder", "torchcodec"])
def test_frames_are_planar_copies_of_torchcodec_frames(episode3, episode3_h264, shared):
    """torchcodec returns CHW views of HWC memory; with ``planar`` (in DataLoader workers) samples
    carry contiguous CHW frames with the same values (what makes collate and window stacks plain
    copies), for single frames and windows; without it, torchcodec's views as they are. Clips the
    shared decoder takes come contiguous either way (``shared_decoder.PlanarFrame``)."""
    from torchcodec.decoders import VideoDecoder

    from lerobot_wds.reader.shared_decoder import SharedClipDecoder

    episode = episode3 if shared else episode3_h264
    cam = "observation.images.top"
    lead = episode.meta.clips[cam].lead_in
    ref = VideoDecoder(episode.clips[cam], seek_mode="exact")
    assert not ref.get_frame_at(lead).data.is_contiguous()  # what planar() exists for
    video = EpisodeVideo(episode, reach={cam: (3, 0)}, planar=True)
    for at in range(10):
        window = video.frames(cam, np.clip(np.array([at - 3, at]), 0, 59), at)
        single = EpisodeVideo(episode, planar=True).frames(cam, np.array([at]), at)
        as_given = EpisodeVideo(episode).frames(cam, np.array([at]), at)
        assert window.is_contiguous() and single.is_contiguous() and as_given.is_contiguous() == shared
        assert torch.equal(window[1], ref.get_frame_at(lead + at).data)
        assert torch.equal(single[0], window[1]) and torch.equal(as_given[0], window[1])
    assert isinstance(video._decoders[cam], SharedClipDecoder) == shared


def test_frames_decoded_ahead_on_another_thread_are_handed_out_without_decoding_again(episode3):
    """``decode`` (what the dataset's helper threads call a sample ahead): the frames it decodes on
    another thread are the ones ``frames`` hands out, bit for bit, and none is decoded twice."""
    cam = "observation.images.top"
    fresh = EpisodeVideo(episode3).frames(cam, np.arange(60))
    video = EpisodeVideo(episode3, reach={cam: (3, 0)})
    got = []
    for i in range(60):
        window = np.array([max(0, i - 3), i])
        ahead = threading.Thread(target=video.decode, args=(cam, window))
        ahead.start()
        ahead.join()
        assert video.decoded == i + 1  # only the new frame: the window's older one is still held
        got.append(video.frames(cam, window, at=i))
    assert video.decoded == 60
    for i, pair in enumerate(got):
        assert torch.equal(pair[0], fresh[max(0, i - 3)]) and torch.equal(pair[1], fresh[i])


def test_planar_keeps_values_of_any_layout():
    hwc = torch.randint(0, 256, (7, 5, 3), dtype=torch.uint8)
    for frame in (hwc.permute(2, 0, 1), hwc.permute(2, 0, 1).contiguous(), hwc[:, :4].permute(2, 0, 1)):
        out = planar(frame)
        assert out.is_contiguous() and torch.equal(out, frame)


def test_gpu_decoder_that_fell_back_to_the_cpu_is_named_once_per_camera(episode3, monkeypatch, caplog):
    """``video_decode_device="cuda"`` on a GPU whose NVDEC does not take the codec (lerobot's AV1 on an
    H200, README "GPU decode"): torchcodec decodes on the CPU, slower than asking for the CPU. The
    GPU itself cannot run here; the status is torchcodec's own, in the state its NVDEC backend
    leaves it when the GPU refuses a clip. A real CPU decoder's status warns nothing."""
    from torchcodec.decoders import VideoDecoder
    from torchcodec.decoders._video_decoder import CpuFallbackStatus

    from lerobot_wds.reader import video

    monkeypatch.setattr(video, "_WARNED_FALLBACK", set())
    cam = "observation.images.top"
    dec = VideoDecoder(episode3.clips[cam])
    dec.get_frame_at(0)
    with caplog.at_level("WARNING", logger=video.__name__):
        assert not video.warn_if_decoded_on_cpu(cam, "cuda", dec.cpu_fallback)
        assert not caplog.records
        refused = CpuFallbackStatus(status_known=True)
        refused._is_fallback = refused._video_not_supported = True
        refused._backend = "CUDA"
        assert video.warn_if_decoded_on_cpu(cam, "cuda", refused)
        assert video.warn_if_decoded_on_cpu(cam, "cuda", refused)  # still true; no second warning
        assert video.warn_if_decoded_on_cpu("observation.images.wrist", "cuda", refused)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and cam in messages[0] and "wrist" in messages[1]
    assert "Video not supported" in messages[0] and "--codec h264" in messages[0]
