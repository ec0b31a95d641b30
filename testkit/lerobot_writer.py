"""LeRobot v3.0 datasets written by lerobot's OWN writer (needs lerobot installed, e.g. ``.venv-lerobot``).

``testkit.synthetic`` imitates lerobot's layout without lerobot; this module calls the real thing, the
path ``lerobot-record`` takes: ``LeRobotDataset.create(..., streaming_encoding=True)`` ->
``add_frame`` per frame -> ``save_episode`` per episode -> ``finalize``. Layout, codec settings
(lerobot's default encoder), episode concatenation, file rollover, stats and metadata are therefore
whatever the installed lerobot produces. Only the content is synthetic: frames from
:func:`testkit.synthetic_frames.render_frames` (a disc circling fast, so an off-by-one frame never
matches by accident, and the (episode, frame) index drawn as a block code) and smooth trajectories
for ``observation.state`` with ``action`` leading it by 3 steps.

Small ``data_files_size_mb`` / ``video_files_size_mb`` make lerobot spread the episodes over several
data and video files (cameras roll over independently), as real datasets do at 100 / 200 MB.

CLI: ``python -m testkit.lerobot_writer OUT --episodes 50 --length 80-120 --camera observation.images.top=480x640``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .synthetic_data import _trajectory
from .synthetic_frames import check_shape, render_frames

__all__ = ["write_lerobot_dataset", "main"]

TASKS = ("pick up the red cube and place it in the bin", "open the top drawer", "fold the towel in half")


def _lerobot_dataset_class():
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration at info level
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # one "Map" bar per episode
    try:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
    except ImportError as e:
        raise ImportError(
            "testkit.lerobot_writer drives lerobot's own writer: run it with the lerobot environment "
            "(make .venv-lerobot, then .venv-lerobot/bin/python -m testkit.lerobot_writer ...)"
        ) from e
    return LeRobotDataset


def _features(cameras: Mapping[str, tuple[int, int]], image_cameras: Mapping[str, tuple[int, int]],
              state_dim: int) -> dict:
    """Features as ``lerobot-record`` builds them (``hw_to_dataset_features``): HWC camera shapes."""
    names = [f"joint{i}" for i in range(state_dim)]
    features: dict = {}
    for dtype, cams in (("video", cameras), ("image", image_cameras)):
        for key, (h, w) in cams.items():
            check_shape(key, (h, w))
            features[key] = {"dtype": dtype, "shape": (h, w, 3), "names": ["height", "width", "channels"]}
    features["observation.state"] = {"dtype": "float32", "shape": (state_dim,), "names": names}
    features["action"] = {"dtype": "float32", "shape": (state_dim,), "names": names}
    return features


def write_lerobot_dataset(
    root: str | Path,
    *,
    lengths: Sequence[int],
    cameras: Mapping[str, tuple[int, int]],
    image_cameras: Mapping[str, tuple[int, int]] | None = None,
    fps: int = 30,
    state_dim: int = 6,
    tasks: Sequence[str] = TASKS,
    video_files_size_mb: float | None = None,
    data_files_size_mb: float | None = None,
    repo_id: str = "testkit/lerobot_writer",
    robot_type: str = "aloha_synthetic",
    seed: int = 0,
    texture: float = 0.0,
) -> Path:
    """Write a LeRobot v3.0 dataset at ``root`` (must not exist) with lerobot's writer; return ``root``.

    ``lengths``: frames per episode (episode ``e`` gets task ``tasks[e % len(tasks)]``).
    ``cameras``: video features, key -> (H, W); ``image_cameras``: image-dtype features (PNG in the
    data parquet). ``video_files_size_mb`` / ``data_files_size_mb``: lerobot's file size limits
    (``None``: lerobot's defaults, 200 / 100 MB). ``texture``: grain/noise std in 8-bit levels for a
    camera-like bitrate (see ``render_frames``). Deterministic content for a given ``seed``.
    """
    root = Path(root)
    if root.exists():
        raise FileExistsError(f"{root}: exists; lerobot's writer creates the dataset directory itself")
    if not lengths or min(lengths) < 1:
        raise ValueError(f"lengths={list(lengths)}: need at least one episode, each of >= 1 frame")
    image_cameras = dict(image_cameras or {})
    LeRobotDataset = _lerobot_dataset_class()
    dataset = LeRobotDataset.create(
        repo_id,
        fps,
        root=root,
        robot_type=robot_type,
        features=_features(cameras, image_cameras, state_dim),
        use_videos=True,
        streaming_encoding=True,
        video_files_size_in_mb=video_files_size_mb,
        data_files_size_in_mb=data_files_size_mb,
    )
    shapes = {**cameras, **image_cameras}
    for e, n in enumerate(lengths):
        frames = {key: render_frames(e, n, shape, seed, texture) for key, shape in shapes.items()}
        traj = _trajectory(np.random.default_rng([seed, e, 1]), n, state_dim, fps)
        task = tasks[e % len(tasks)]
        for i in range(n):
            frame = {key: f[i] for key, f in frames.items()}
            frame["observation.state"] = traj[i]
            frame["action"] = traj[i + 3]  # action leads state by 3 steps
            frame["task"] = task
            dataset.add_frame(frame)
        dataset.save_episode()
    dataset.finalize()
    return root


def _shape(text: str) -> tuple[str, tuple[int, int]]:
    key, _, size = text.partition("=")
    h, _, w = size.partition("x")
    if not key or not h.isdigit() or not w.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=HxW, e.g. observation.images.top=480x640")
    return key, (int(h), int(w))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m testkit.lerobot_writer OUT --episodes 50 --length 80-120 --camera KEY=HxW ...``."""
    p = argparse.ArgumentParser(prog="python -m testkit.lerobot_writer",
                                description="Write a LeRobot v3.0 dataset with lerobot's own writer.")
    p.add_argument("out", type=Path)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--length", default="80-120", help="frames per episode, N or LO-HI (uniform)")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--camera", type=_shape, action="append", default=[], help="video KEY=HxW (repeatable)")
    p.add_argument("--image-camera", type=_shape, action="append", default=[], help="image KEY=HxW (repeatable)")
    p.add_argument("--state-dim", type=int, default=6)
    p.add_argument("--video-files-size-mb", type=float, default=None, help="lerobot's default: 200")
    p.add_argument("--data-files-size-mb", type=float, default=None, help="lerobot's default: 100")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--texture", type=float, default=0.0,
                   help="grain/noise std in 8-bit levels (0: flat drawings; 10: ~7 KB/frame at 240x320 AV1)")
    a = p.parse_args(argv)
    lo, _, hi = a.length.partition("-")
    lengths = np.random.default_rng(a.seed).integers(int(lo), int(hi or lo) + 1, size=a.episodes).tolist()
    cams = dict(a.camera) or ({} if a.image_camera else {"observation.images.top": (240, 320)})
    root = write_lerobot_dataset(
        a.out, lengths=lengths, cameras=cams, image_cameras=dict(a.image_camera), fps=a.fps,
        state_dim=a.state_dim, video_files_size_mb=a.video_files_size_mb,
        data_files_size_mb=a.data_files_size_mb, seed=a.seed, texture=a.texture,
    )
    info = json.loads((root / "meta" / "info.json").read_text())
    print(f"{root}: {info['total_episodes']} episodes, {info['total_frames']} frames", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
