"""Meta half of a synthetic LeRobot v3.0 dataset: ``meta/*`` files and the stats in them.

Keys, column order and file metadata copy what lerobot 0.6.1 writes (see the fixtures in
``tests/data``): ``info.json`` with video ``info`` blocks, pandas index metadata on
``meta/tasks.parquet``, per-episode ``stats/<feature>/<stat>`` list columns in ``meta/episodes``,
``stats.json``. Stats have lerobot's shapes and types (images: per channel, shape (3, 1, 1),
values in [0, 1]) but are computed more cheaply (images on a pixel subsample).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CHUNKS_SIZE = 1000  # files per chunk directory, lerobot's default
STAT_NAMES = ("min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99")
_QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
_INDEX = ("timestamp", "frame_index", "episode_index", "index", "task_index")


def next_file(chunk: int, file: int) -> tuple[int, int]:
    """lerobot's ``update_chunk_file_indices``: next file, new chunk after CHUNKS_SIZE files."""
    return (chunk + 1, 0) if file + 1 == CHUNKS_SIZE else (chunk, file + 1)


def array_stats(x: np.ndarray) -> dict:
    """Stats over axis 0 of x (n, ...) as float64 arrays; count as int64 (1,)."""
    x = x.astype(np.float64)
    s = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0)}
    s["count"] = np.array([len(x)], np.int64)
    s.update({k: np.quantile(x, q, axis=0) for k, q in _QUANTILES.items()})
    return s


def image_stats(frames: np.ndarray) -> dict:
    """Per-channel stats (3, 1, 1) in [0, 1] of (n, H, W, 3) uint8 frames, on a pixel subsample."""
    sub = frames[:: max(1, len(frames) // 8), ::4, ::4].reshape(-1, 3) / 255.0
    s = {k: v[:, None, None] for k, v in array_stats(sub).items()}
    s["count"] = np.array([len(frames)], np.int64)
    return s


def aggregate(per_episode: list[dict]) -> dict:
    """Dataset stats from episode stats, weighted by count (pooled std, averaged quantiles)."""
    w = np.array([s["count"][0] for s in per_episode], np.float64)
    stack = {k: np.stack([s[k] for s in per_episode]) for k in STAT_NAMES if k != "count"}
    wb = w.reshape((-1,) + (1,) * (stack["mean"].ndim - 1)) / w.sum()
    mean = (stack["mean"] * wb).sum(0)
    var = ((stack["std"] ** 2 + (stack["mean"] - mean) ** 2) * wb).sum(0)
    out = {"min": stack["min"].min(0), "max": stack["max"].max(0), "mean": mean, "std": np.sqrt(var)}
    out["count"] = np.array([int(w.sum())], np.int64)
    out.update({k: (stack[k] * wb).sum(0) for k in _QUANTILES})
    return out


def _stat_columns(prefix: str, per_episode: list[dict]) -> dict[str, pa.Array]:
    """``stats/<feature>/<stat>`` columns: nested float64 lists (int64 for count)."""
    cols = {}
    for name in STAT_NAMES:
        typ = pa.int64() if name == "count" else pa.float64()
        for _ in range(per_episode[0][name].ndim):
            typ = pa.list_(typ)
        cols[f"stats/{prefix}/{name}"] = pa.array([s[name].tolist() for s in per_episode], typ)
    return cols


def _tasks_table(tasks: list[str]) -> pa.Table:
    """``meta/tasks.parquet`` as lerobot writes it from a pandas frame indexed by task string."""
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                            "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode",
             "numpy_type": "object", "metadata": None},
        ],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.3.3",
    }
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks)})
    return table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)})


def write_meta(root: Path, rows: list[dict], stats: list[dict], tasks: list[str]) -> None:
    """Write ``meta/episodes`` (rows + ``stats/…`` columns), ``meta/tasks.parquet``, ``meta/stats.json``.

    ``rows[e]`` holds episode ``e``'s bookkeeping columns in lerobot's order; ``stats[e]`` maps a
    feature to its per-episode stats (video features last, as lerobot orders them).
    """
    episodes = pa.Table.from_pylist(rows)
    for feature in stats[0]:
        for name, col in _stat_columns(feature, [s[feature] for s in stats]).items():
            episodes = episodes.append_column(name, col)
    zeros = pa.array(np.zeros(len(rows), np.int64))  # all episodes in meta/episodes file 0
    episodes = episodes.append_column("meta/episodes/chunk_index", zeros)
    episodes = episodes.append_column("meta/episodes/file_index", zeros)
    meta = root / "meta"
    (meta / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(episodes, meta / "episodes" / "chunk-000" / "file-000.parquet")
    pq.write_table(_tasks_table(tasks), meta / "tasks.parquet")
    total = {f: {k: v.tolist() for k, v in aggregate([s[f] for s in stats]).items()} for f in stats[0]}
    (meta / "stats.json").write_text(json.dumps(total, indent=4))


def write_info(root: Path, *, lengths: list[int], fps: int, cameras: dict, image_cameras: dict,
               state_dim: int, codec: str, gop: int, n_tasks: int, video_files_size_mb: float,
               data_files_size_mb: float, robot_type: str, video_options: dict) -> None:
    """Write ``meta/info.json`` with lerobot 0.6.1's keys, in its order."""
    def camera(h: int, w: int) -> dict:
        return {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"]}

    features: dict[str, dict] = {}
    for key, (h, w) in cameras.items():
        features[key] = camera(h, w)
        features[key]["info"] = {
            "video.height": h, "video.width": w, "video.codec": codec, "video.pix_fmt": "yuv420p",
            "video.fps": fps, "video.channels": 3, "has_audio": False, "video.g": gop,
            "video.crf": int(video_options["crf"]), "video.preset": _maybe_int(video_options["preset"]),
            "video.fast_decode": 0, "video.video_backend": "pyav", "video.extra_options": {},
            "is_depth_map": False,
        }
    for key, (h, w) in image_cameras.items():
        features[key] = {**camera(h, w), "dtype": "image"}
    names = [f"joint{i}" for i in range(state_dim)]
    for key in ("observation.state", "action"):
        features[key] = {"dtype": "float32", "shape": [state_dim], "names": names}
    for key in _INDEX:
        features[key] = {"dtype": "float32" if key == "timestamp" else "int64", "shape": [1], "names": None}
    info = {
        "codebase_version": "v3.0", "fps": fps, "features": features,
        "total_episodes": len(lengths), "total_frames": int(sum(lengths)), "total_tasks": n_tasks,
        "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": data_files_size_mb,
        "video_files_size_in_mb": video_files_size_mb,
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "robot_type": robot_type, "splits": {"train": f"0:{len(lengths)}"},
    }
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4, ensure_ascii=False))


def _maybe_int(text: str) -> int | str:
    return int(text) if text.isdigit() else text
