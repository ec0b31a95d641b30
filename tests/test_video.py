"""reader/video.py: in-memory clip decode is bit-identical to lerobot's frames; the cache is bounded."""

import numpy as np
import pytest
import torch

from lerobot_wds.packer.clip import ClipCutter, ClipRequest
from lerobot_wds.reader.episodes import LoadedEpisode, EpisodeError
from lerobot_wds.format import ShardEpisodeMeta
from lerobot_wds.reader.video import EpisodeVideo, FrameCache, lookahead_pays, to_float

ROOT = "tests/data/lerobot_v3_av1"
TOP = f"{ROOT}/videos/observation.images.top/chunk-000/file-002.mp4"  # episodes 2 (12 frames) and 3 (60)
EXPECTED = np.load("tests/data/expected/lerobot_v3_av1/expected_plain.npz")


@pytest.fixture(scope="module")
def episode3():
    cutter = ClipCutter(TOP, TOP, 30)
    clip, info = cutter.cut(ClipRequest(3, 0.4, 60))
    cutter.close()
    meta = ShardEpisodeMeta(1, 3, 60, 137, ("t",), {"observation.images.top": info})
    return LoadedEpisode("shard-000001.tar", meta, {}, {"observation.images.top": clip})


def test_frames_bit_identical_to_lerobot(episode3):
    video = EpisodeVideo(episode3, FrameCache(64 << 20))
    idx = [0, 1, 2, 15, 18, 33, 39, 44, 51, 52, 58, 59]  # global 137..196
    frames = to_float(video.frames("observation.images.top", np.array(idx)))
    for i, f in zip(idx, frames):
        exp = EXPECTED[f"{137 + i}/observation.images.top"]
        assert f.dtype == torch.float32 and f.shape == exp.shape
        assert np.array_equal(f.numpy(), exp), f"frame {i}"


def test_gop_neighbours_reused(episode3):
    cache = FrameCache(64 << 20)
    video = EpisodeVideo(episode3, cache)
    a = video.frames("observation.images.top", np.array([10]))  # key frame: its GOP partner comes along
    n = video.decoded
    b = video.frames("observation.images.top", np.array([11, 10]))
    assert video.decoded == n  # served from the cache
    assert torch.equal(b[1], a[0])
    fresh = EpisodeVideo(episode3, FrameCache(0)).frames("observation.images.top", np.array([11]))
    assert torch.equal(b[0], fresh[0])
    video.close()
    assert len(cache) == 0


def test_cache_budget():
    cache = FrameCache(3 * 100)
    for i in range(10):
        cache.put((0, "c", i), torch.zeros(100, dtype=torch.uint8))
    assert cache.bytes <= 300 and len(cache) == 3
    assert cache.get((0, "c", 9)) is not None and cache.get((0, "c", 0)) is None


def test_to_float_matches_numpy():
    u8 = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16)
    assert np.array_equal(to_float(u8).numpy(), u8.numpy().astype(np.float32) / np.float32(255))


def test_undecodable_clip_names_episode(episode3):
    bad = LoadedEpisode("shard-000004.tar", episode3.meta, {}, {"observation.images.top": b"not an mp4" * 10})
    with pytest.raises(EpisodeError, match=r"shard-000004.tar, episode 3: clip of camera 'observation.images.top'"):
        EpisodeVideo(bad, FrameCache(0)).frames("observation.images.top", np.array([0]))


def test_frames_float_equals_to_float(episode3):
    video = EpisodeVideo(episode3, FrameCache(64 << 20))
    idx = np.array([3, 0, 3, 59])
    a = video.frames_float("observation.images.top", idx)
    b = to_float(EpisodeVideo(episode3, FrameCache(0)).frames("observation.images.top", idx))
    assert a.dtype == torch.float32 and torch.equal(a, b)


def test_lookahead_only_when_the_cache_holds_the_pool():
    frame = 3 * 240 * 320
    assert lookahead_pays(512 << 20, 16, 60, 2 * frame)  # 16 episodes of 60 frames: 442 MB
    assert not lookahead_pays(512 << 20, 16, 500, 2 * 3 * 480 * 640)  # 14 GB of frames


def test_no_lookahead_keeps_only_free_frames(episode3):
    video = EpisodeVideo(episode3, FrameCache(64 << 20), lookahead_gop=0)
    video.frames("observation.images.top", np.array([11]))  # GOP 10-11: 10 comes free
    assert video.decoded == 2 and len(video.cache) == 2
    video.frames("observation.images.top", np.array([12]))  # key frame: nothing ahead
    assert video.decoded == 3
