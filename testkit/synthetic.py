"""Synthetic LeRobot v3.0 datasets, laid out exactly as lerobot 0.6.1 writes them.

Used by the tests, benchmarks and ``make demo`` to get datasets of any size without a download.
The layout follows the real fixtures in ``tests/data`` (written by lerobot's own writer):
``meta/info.json``, ``meta/tasks.parquet`` (pandas index metadata), ``meta/episodes/…`` (with
per-camera file indices and timestamps and per-episode ``stats/…`` columns), ``meta/stats.json``,
``data/chunk-*/file-*.parquet`` (several episodes per file, one row group each, rollover by size)
and ``videos/<key>/chunk-*/file-*.mp4`` (several episodes per file, cameras rolling over
independently). The parts live in ``testkit.synthetic_frames`` (frames), ``testkit.synthetic_video`` (mp4 files),
``testkit.synthetic_data`` (data parquet) and ``testkit.synthetic_meta`` (meta files, stats).

Frames are cheap numpy drawings (optionally with grain and sensor noise for a camera-like bitrate)
carrying the episode and frame index as a block code, readable back with :func:`read_code` after
lossy encoding. That lets tests check "frame ``i`` of episode ``e`` decodes at
``from_timestamp + i / fps``" by content.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from . import synthetic_data as data
from . import synthetic_meta as meta
from . import synthetic_video as video
from .synthetic_frames import check_shape, read_code, render_frames

__all__ = ["write_dataset", "render_frames", "read_code", "main"]

DEFAULT_TASKS = ("pick up the red cube and place it in the bin", "open the top drawer")


def write_dataset(
    root: str | Path,
    *,
    episodes: Sequence[int],
    fps: int = 30,
    cameras: Mapping[str, tuple[int, int]],
    image_cameras: Mapping[str, tuple[int, int]] = {},
    state_dim: int = 6,
    codec: str = "av1",
    gop: int = 2,
    video_files_size_mb: float = 200.0,
    data_files_size_mb: float = 100.0,
    keyframe_aligned: bool = True,
    seed: int = 0,
    tasks: Sequence[str] = DEFAULT_TASKS,
    robot_type: str = "synthetic",
    texture: float = 0.0,
) -> Path:
    """Write a LeRobot v3.0 dataset to the empty or missing directory ``root``; return its path.

    ``episodes`` are the episode lengths in frames; ``cameras`` map a video key to (H, W) pixels
    and ``image_cameras`` an image-dtype key to (H, W) (PNG bytes in the data parquet). Episode
    ``e`` gets task ``tasks[e % len(tasks)]``. Files roll over as lerobot does: a new file when
    the current one plus the episode would reach the limit (sizes in MiB, 2**20 bytes, as lerobot).

    ``keyframe_aligned=True`` encodes each episode separately (keyframe every ``gop`` frames from
    its start) and concatenates them by remux, so every episode starts on a keyframe, as lerobot
    does. ``False`` encodes each mp4 file in one go, keyframes every ``gop`` frames of the file,
    so an episode starts on a keyframe only when the frames before it are a multiple of ``gop``.
    ``codec`` is ``"av1"`` (libsvtav1, preset 12, crf 30) or ``"h264"`` (libx264, B-frames).
    ``texture`` > 0 adds grain and sensor noise to every camera (see :func:`render_frames`); 0 keeps
    the flat drawings, whose tiny packets make per-packet costs look larger than on real footage.
    """
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root}: not empty; write_dataset needs an empty or missing directory")
    lengths = [int(n) for n in episodes]
    if not lengths or min(lengths) < 1:
        raise ValueError(f"episodes={lengths!r}: need at least one episode, each >= 1 frame")
    if not cameras and not image_cameras:
        raise ValueError("no cameras: give at least one of cameras= or image_cameras=")
    if codec not in video.CODECS:
        raise ValueError(f"codec={codec!r}; choices: {sorted(video.CODECS)}")
    if not tasks:
        raise ValueError("tasks is empty: give at least one task string")
    if gop < 1 or fps < 1 or state_dim < 1 or texture < 0:
        raise ValueError(f"gop={gop}, fps={fps}, state_dim={state_dim}, texture={texture}: "
                         "gop, fps and state_dim must be >= 1, texture >= 0")
    for key, shape in {**cameras, **image_cameras}.items():
        check_shape(key, shape)
    root.mkdir(parents=True, exist_ok=True)
    episode_tasks = [tasks[e % len(tasks)] for e in range(len(lengths))]
    video_limit = int(video_files_size_mb * 2**20)

    video_rows: dict[str, list[dict]] = {}
    video_stats: dict[str, list[dict]] = {}
    for cam, shape in cameras.items():
        video_rows[cam], video_stats[cam] = video.write_camera(
            root, cam, lambda e, shape=shape: render_frames(e, lengths[e], shape, seed, texture), lengths,
            fps=fps, codec=codec, gop=gop, limit_bytes=video_limit, aligned=keyframe_aligned,
        )
    rows, stats = data.write_data(
        root, lengths=lengths, fps=fps, episode_tasks=episode_tasks, image_cameras=dict(image_cameras),
        state_dim=state_dim, seed=seed, limit_bytes=int(data_files_size_mb * 2**20), 
        render=functools.partial(render_frames, texture=texture),
    )
    for e in range(len(lengths)):  # lerobot's order: video columns after data, video stats last
        for cam in cameras:
            rows[e].update(video_rows[cam][e])
            stats[e][cam] = video_stats[cam][e]
    meta.write_meta(root, rows, stats, list(dict.fromkeys(episode_tasks)))
    meta.write_info(
        root,
        lengths=lengths,
        fps=fps,
        cameras=dict(cameras),
        image_cameras=dict(image_cameras),
        state_dim=state_dim,
        codec=codec,
        gop=gop,
        n_tasks=len(dict.fromkeys(episode_tasks)),
        video_files_size_mb=video_files_size_mb,
        data_files_size_mb=data_files_size_mb,
        robot_type=robot_type,
        video_options=video.CODECS[codec][1],
    )
    return root


def _shape(text: str) -> tuple[str, tuple[int, int]]:
    key, _, size = text.partition("=")
    h, _, w = size.partition("x")
    if not key or not h.isdigit() or not w.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=HxW, e.g. observation.images.top=240x320")
    return key, (int(h), int(w))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m testkit.synthetic OUT --episodes 50 --length 80-120 --camera KEY=HxW ...``."""
    p = argparse.ArgumentParser(prog="python -m testkit.synthetic", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--length", default="80-120", help="frames per episode, N or LO-HI (uniform)")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--camera", type=_shape, action="append", default=[], help="video KEY=HxW")
    p.add_argument("--image-camera", type=_shape, action="append", default=[], help="image KEY=HxW")
    p.add_argument("--state-dim", type=int, default=6)
    p.add_argument("--codec", choices=sorted(video.CODECS), default="av1")
    p.add_argument("--gop", type=int, default=2)
    p.add_argument("--video-files-size-mb", type=float, default=200.0)
    p.add_argument("--data-files-size-mb", type=float, default=100.0)
    p.add_argument("--unaligned", action="store_true", help="episodes need not start on keyframes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--texture", type=float, default=0.0,
                   help="grain/noise std in 8-bit levels (0: flat drawings; 10: ~7 KB/frame at 240x320 AV1)")
    a = p.parse_args(argv)
    lo, _, hi = a.length.partition("-")
    rng = np.random.default_rng(a.seed)
    lengths = rng.integers(int(lo), int(hi or lo) + 1, size=a.episodes).tolist()
    cams = dict(a.camera) or ({} if a.image_camera else {"observation.images.top": (240, 320)})
    root = write_dataset(
        a.out, episodes=lengths, fps=a.fps, cameras=cams, image_cameras=dict(a.image_camera),
        state_dim=a.state_dim, codec=a.codec, gop=a.gop, keyframe_aligned=not a.unaligned,
        video_files_size_mb=a.video_files_size_mb, data_files_size_mb=a.data_files_size_mb,
        seed=a.seed, texture=a.texture,
    )
    info = json.loads((root / "meta" / "info.json").read_text())
    print(f"{root}: {info['total_episodes']} episodes, {info['total_frames']} frames", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
