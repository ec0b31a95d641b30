"""Tabular half of a synthetic LeRobot v3.0 dataset: data parquet, meta parquet/json, stats.

Schemas, column order and file metadata copy what lerobot 0.6.1 writes (see the fixtures in
``tests/data``): fixed-size float32 lists for vectors, the ``huggingface`` schema metadata on data
files, one row group per episode, pandas index metadata on ``meta/tasks.parquet``, per-episode
``stats/<feature>/<stat>`` list columns in ``meta/episodes``. Stats have lerobot's shapes and
types (images: per channel, shape (3, 1, 1), values in [0, 1]) but are computed more cheaply.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path
from typing import Callable

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


def _stats(x: np.ndarray) -> dict:
    """Stats over axis 0 of x (n, ...) as float64 arrays; count as int64 (1,)."""
    x = x.astype(np.float64)
    s = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0)}
    s["count"] = np.array([len(x)], np.int64)
    s.update({k: np.quantile(x, q, axis=0) for k, q in _QUANTILES.items()})
    return s


def image_stats(frames: np.ndarray) -> dict:
    """Per-channel stats (3, 1, 1) in [0, 1] of (n, H, W, 3) uint8 frames, on a pixel subsample."""
    sub = frames[:: max(1, len(frames) // 8), ::4, ::4].reshape(-1, 3) / 255.0
    s = {k: v[:, None, None] for k, v in _stats(sub).items()}
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


def png(rgb: np.ndarray) -> bytes:
    """A complete RGB PNG file of (H, W, 3) uint8 pixels (zlib only, no imaging library)."""
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _trajectory(rng: np.random.Generator, n: int, dim: int, fps: int) -> np.ndarray:
    t = np.arange(n + 3)[:, None] / fps
    amp, freq, phase, bias = rng.uniform([0.1, 0.2, 0, -0.5], [1.0, 1.5, 6.3, 0.5], size=(dim, 4)).T
    return (bias + amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def episode_table(e: int, n: int, first: int, task_index: int, *, fps: int, state_dim: int,
                  seed: int, image_cameras: dict, render: Callable) -> pa.Table:
    """The data rows of episode ``e`` (global indices first..first+n-1), lerobot's column order."""
    cols: dict[str, pa.Array] = {}
    for key, shape in image_cameras.items():
        frames = render(e, n, shape, seed)
        cols[key] = pa.array([{"bytes": png(f), "path": f"frame-{i:06d}.png"} for i, f in enumerate(frames)],
                             pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    traj = _trajectory(np.random.default_rng([seed, e, 1]), n, state_dim, fps)
    vec = pa.list_(pa.float32(), state_dim)
    cols["observation.state"] = pa.FixedSizeListArray.from_arrays(pa.array(traj[:n].ravel()), type=vec)
    cols["action"] = pa.FixedSizeListArray.from_arrays(pa.array(traj[3:].ravel()), type=vec)
    frame = np.arange(n, dtype=np.int64)
    cols["timestamp"] = pa.array((frame / fps).astype(np.float32))
    cols["frame_index"] = pa.array(frame)
    cols["episode_index"] = pa.array(np.full(n, e, np.int64))
    cols["index"] = pa.array(first + frame)
    cols["task_index"] = pa.array(np.full(n, task_index, np.int64))
    return pa.table(cols)


def _numeric_stats(table: pa.Table, image_cameras: dict, frames_of: Callable) -> dict:
    out = {}
    for name in table.column_names:
        if name in image_cameras:
            out[name] = image_stats(frames_of(name))
        else:
            col = table.column(name).combine_chunks()
            values = col.flatten().to_numpy() if pa.types.is_fixed_size_list(col.type) else col.to_numpy()
            out[name] = _stats(values.reshape(len(table), -1))
    return out


def _dtype(t: pa.DataType) -> str:
    return {"float": "float32", "double": "float64"}.get(str(t), str(t))


def _hf_features(schema: pa.Schema) -> dict:
    """The ``huggingface`` schema metadata that lerobot's data files carry (datasets features)."""
    feats: dict[str, dict] = {}
    for f in schema:
        if pa.types.is_struct(f.type):
            feats[f.name] = {"_type": "Image"}
        elif pa.types.is_fixed_size_list(f.type):
            value = {"dtype": _dtype(f.type.value_type), "_type": "Value"}
            feats[f.name] = {"feature": value, "length": f.type.list_size, "_type": "List"}
        else:
            feats[f.name] = {"dtype": _dtype(f.type), "_type": "Value"}
    return feats


def _write_data(root: Path, files: list[tuple[tuple[int, int], list[pa.Table]]], seed: int) -> None:
    """Write data files, one row group per episode table."""
    for (chunk, file), tables in files:
        schema = tables[0].schema
        fingerprint = f"{zlib.crc32(repr((seed, chunk, file)).encode()):016x}"
        hf = {"info": {"features": _hf_features(schema)}, "fingerprint": fingerprint}
        schema = schema.with_metadata({"huggingface": json.dumps(hf)})
        path = root / "data" / f"chunk-{chunk:03d}" / f"file-{file:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(path, schema) as w:
            for t in tables:
                w.write_table(t.replace_schema_metadata(schema.metadata))


def _size(table: pa.Table) -> int:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.tell()


def _stat_columns(prefix: str, per_episode: list[dict]) -> dict[str, pa.Array]:
    cols = {}
    for name in STAT_NAMES:
        values = [s[name].tolist() for s in per_episode]
        depth = per_episode[0][name].ndim
        leaf = pa.int64() if name == "count" else pa.float64()
        typ = leaf
        for _ in range(depth):
            typ = pa.list_(typ)
        cols[f"stats/{prefix}/{name}"] = pa.array(values, typ)
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


def write_tables(root: Path, *, lengths: list[int], fps: int, episode_tasks: list[str],
                 image_cameras: dict, state_dim: int, seed: int, data_limit_bytes: int,
                 video_rows: dict[str, list[dict]], video_stats: dict[str, list[dict]],
                 render: Callable) -> None:
    """Write data parquet files, ``meta/tasks.parquet``, ``meta/episodes`` and ``meta/stats.json``.

    A data file rolls over when its size plus the episode's would reach ``data_limit_bytes``.
    """
    tasks = list(dict.fromkeys(episode_tasks))
    files: list[tuple[tuple[int, int], list[pa.Table]]] = [((0, 0), [])]
    size, first = 0, 0
    rows, stats = [], []
    for e, n in enumerate(lengths):
        table = episode_table(e, n, first, tasks.index(episode_tasks[e]), fps=fps,
                              state_dim=state_dim, seed=seed, image_cameras=image_cameras, render=render)
        ep_size = _size(table)
        if files[-1][1] and size + ep_size >= data_limit_bytes:
            files.append((next_file(*files[-1][0]), []))
            size = 0
        files[-1][1].append(table)
        size += ep_size
        (chunk, file) = files[-1][0]
        row = {"episode_index": e, "tasks": [episode_tasks[e]], "length": n,
               "data/chunk_index": chunk, "data/file_index": file,
               "dataset_from_index": first, "dataset_to_index": first + n}
        for key in video_rows:
            row.update(video_rows[key][e])
        rows.append(row)
        frames_of = lambda key, e=e, n=n: render(e, n, image_cameras[key], seed)  # noqa: E731
        ep_stats = _numeric_stats(table, image_cameras, frames_of)
        ep_stats.update({key: video_stats[key][e] for key in video_rows})
        stats.append(ep_stats)
        first += n
    _write_data(root, files, seed)

    episodes = pa.Table.from_pylist(rows)
    stat_cols: dict[str, pa.Array] = {}
    for feature in stats[0]:
        stat_cols.update(_stat_columns(feature, [s[feature] for s in stats]))
    for name, col in stat_cols.items():
        episodes = episodes.append_column(name, col)
    zeros = pa.array(np.zeros(len(lengths), np.int64))
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
