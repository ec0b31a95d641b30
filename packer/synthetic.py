"""Synthetic LeRobot v3.0 datasets, laid out exactly as lerobot 0.6.1 writes them.

Used by the tests, benchmarks and ``make demo`` to get datasets of any size without a download.
The layout follows the real fixtures in ``tests/data`` (written by lerobot's own writer):
``meta/info.json``, ``meta/tasks.parquet`` (pandas index metadata), ``meta/episodes/…`` (with
per-camera file indices and timestamps and per-episode ``stats/…`` columns), ``meta/stats.json``,
``data/chunk-*/file-*.parquet`` (several episodes per file, one row group each, rollover by size)
and ``videos/<key>/chunk-*/file-*.mp4`` (several episodes per file, cameras rolling over
independently). The three parts live in ``packer.synthetic_video`` (mp4 files),
``packer.synthetic_data`` (data parquet) and ``packer.synthetic_meta`` (meta files, stats).

Frames are cheap numpy drawings (gradient background, a disc circling fast so that no two
consecutive frames look alike) with the episode and frame index written as a block code in the
top-left corner, readable back with :func:`read_code` after lossy encoding. That lets tests check
"frame ``i`` of episode ``e`` decodes at ``from_timestamp + i / fps``" by content.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from packer import synthetic_data as data
from packer import synthetic_meta as meta
from packer import synthetic_video as video

DEFAULT_TASKS = ("pick up the red cube and place it in the bin", "open the top drawer")
_CODE_BITS = 10  # bits per code row: frame index (row 0) and episode index (row 1), mod 1024


def _block(h: int, w: int) -> int:
    """Side (pixels) of one code block; two rows of ``_CODE_BITS`` blocks fit the frame."""
    return max(4, min(w // (_CODE_BITS + 2), h // 8))


def _check_shape(key: str, shape: tuple[int, int]) -> None:
    h, w = shape
    if h < 32 or w < 48 or h % 2 or w % 2:
        raise ValueError(f"{key}: camera size {h}x{w} (HxW); need even H >= 32 and W >= 48 "
                         "(yuv420p needs even sizes; the frame code needs room)")


def render_frames(episode_index: int, length: int, shape: tuple[int, int], seed: int) -> np.ndarray:
    """Frames (length, H, W, 3) uint8 RGB of one camera for one episode; pure, deterministic."""
    _check_shape("render_frames", shape)
    h, w = shape
    rng = np.random.default_rng([seed, episode_index, h, w])
    c0, c1 = rng.integers(40, 200, size=(2, 3))
    ramp = (np.arange(w)[None, :, None] / w + np.arange(h)[:, None, None] / (2 * h)) / 1.5
    bg = (c0 + (c1 - c0) * ramp).astype(np.uint8)
    bs = _block(h, w)
    r = max(3, min(h, w) // 10)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disc = yy**2 + xx**2 <= r * r
    color = rng.integers(0, 256, size=3).astype(np.uint8)
    phase, speed = rng.uniform(0, 2 * np.pi), rng.choice([-1, 1]) * rng.uniform(0.45, 0.7)
    top = 2 * bs + r + 1
    out = np.empty((length, h, w, 3), np.uint8)
    for i in range(length):
        f = out[i]
        f[:] = bg
        a = phase + speed * i
        cy = int(top + (h - r - 1 - top) * (0.5 + 0.5 * np.sin(a)))
        cx = int(r + (w - 2 * r - 1) * (0.5 + 0.5 * np.cos(1.3 * a)))
        f[cy - r : cy + r + 1, cx - r : cx + r + 1][disc] = color
        for row, value in enumerate((i, episode_index)):
            bits = (value >> np.arange(_CODE_BITS)) & 1
            strip = np.repeat(np.where(bits, 235, 16).astype(np.uint8), bs)
            f[row * bs : (row + 1) * bs, : _CODE_BITS * bs] = strip[None, :, None]
    return out


def read_code(frame: np.ndarray) -> tuple[int, int]:
    """(episode_index, frame_index) mod 1024 drawn by :func:`render_frames`; frame is (H, W, 3)."""
    h, w = frame.shape[:2]
    bs = _block(h, w)
    gray = frame.astype(np.float32).mean(axis=-1)
    values = []
    for row in range(2):
        y = row * bs + bs // 2
        xs = np.arange(_CODE_BITS) * bs + bs // 2
        bits = gray[y, xs] > 128
        values.append(int((bits.astype(np.int64) << np.arange(_CODE_BITS)).sum()))
    return values[1], values[0]


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
    if gop < 1 or fps < 1 or state_dim < 1:
        raise ValueError(f"gop={gop}, fps={fps}, state_dim={state_dim}: each must be >= 1")
    for key, shape in {**cameras, **image_cameras}.items():
        _check_shape(key, shape)
    root.mkdir(parents=True, exist_ok=True)
    episode_tasks = [tasks[e % len(tasks)] for e in range(len(lengths))]
    video_limit = int(video_files_size_mb * 2**20)

    video_rows: dict[str, list[dict]] = {}
    video_stats: dict[str, list[dict]] = {}
    for cam, shape in cameras.items():
        video_rows[cam], video_stats[cam] = video.write_camera(
            root, cam, lambda e, shape=shape: render_frames(e, lengths[e], shape, seed), lengths,
            fps=fps, codec=codec, gop=gop, limit_bytes=video_limit, aligned=keyframe_aligned,
        )
    rows, stats = data.write_data(
        root, lengths=lengths, fps=fps, episode_tasks=episode_tasks, image_cameras=dict(image_cameras),
        state_dim=state_dim, seed=seed, limit_bytes=int(data_files_size_mb * 2**20), render=render_frames,
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
    """``python -m packer.synthetic OUT --episodes 50 --length 80-120 --camera KEY=HxW ...``."""
    p = argparse.ArgumentParser(prog="python -m packer.synthetic", description=__doc__.splitlines()[0])
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
    a = p.parse_args(argv)
    lo, _, hi = a.length.partition("-")
    rng = np.random.default_rng(a.seed)
    lengths = rng.integers(int(lo), int(hi or lo) + 1, size=a.episodes).tolist()
    cams = dict(a.camera) or ({} if a.image_camera else {"observation.images.top": (240, 320)})
    root = write_dataset(
        a.out, episodes=lengths, fps=a.fps, cameras=cams, image_cameras=dict(a.image_camera),
        state_dim=a.state_dim, codec=a.codec, gop=a.gop, keyframe_aligned=not a.unaligned,
        video_files_size_mb=a.video_files_size_mb, data_files_size_mb=a.data_files_size_mb,
        seed=a.seed,
    )
    info = json.loads((root / "meta" / "info.json").read_text())
    print(f"{root}: {info['total_episodes']} episodes, {info['total_frames']} frames", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
