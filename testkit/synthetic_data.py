"""Data half of a synthetic LeRobot v3.0 dataset: ``data/chunk-*/file-*.parquet``.

Schemas and file metadata copy lerobot 0.6.1 (see the fixtures in ``tests/data``): fixed-size
float32 lists for vectors, scalar bookkeeping columns, image-dtype cameras as
``struct<bytes: binary, path: string>`` holding a PNG file, the ``huggingface`` schema metadata,
one row group per episode, several episodes per file with rollover by size.
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

from .synthetic_meta import array_stats, image_stats, next_file


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
                  seed: int, image_cameras: dict, render: Callable) -> tuple[pa.Table, dict]:
    """Data rows of episode ``e`` (global indices first..first+n-1) in lerobot's column order, and
    their per-episode stats by column."""
    cols: dict[str, pa.Array] = {}
    stats: dict[str, dict] = {}
    for key, shape in image_cameras.items():
        frames = render(e, n, shape, seed)
        cells = [{"bytes": png(f), "path": f"frame-{i:06d}.png"} for i, f in enumerate(frames)]
        cols[key] = pa.array(cells, pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        stats[key] = image_stats(frames)
    traj = _trajectory(np.random.default_rng([seed, e, 1]), n, state_dim, fps)
    frame = np.arange(n, dtype=np.int64)
    numeric = {"observation.state": traj[:n], "action": traj[3:],  # action leads state by 3 steps
               "timestamp": (frame / fps).astype(np.float32), "frame_index": frame,
               "episode_index": np.full(n, e, np.int64), "index": first + frame,
               "task_index": np.full(n, task_index, np.int64)}
    vec = pa.list_(pa.float32(), state_dim)
    for key, values in numeric.items():
        flat = pa.array(values.ravel())
        cols[key] = pa.FixedSizeListArray.from_arrays(flat, type=vec) if values.ndim == 2 else flat
        stats[key] = array_stats(values.reshape(n, -1))
    return pa.table(cols), stats


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


class _DataFiles:
    """Data parquet files filled in episode order, one row group per episode; a new file starts
    when the current one plus the episode would reach ``limit`` bytes (lerobot's rule)."""

    def __init__(self, root: Path, limit: int, seed: int) -> None:
        self.root, self.limit, self.seed = root, limit, seed
        self.index, self.size, self.writer = (0, 0), 0, None

    def add(self, table: pa.Table) -> tuple[int, int]:
        """Append one episode; return the (chunk, file) it went to."""
        size = _size(table)
        if self.writer is not None and self.size + size >= self.limit:
            self.close()
            self.index, self.size = next_file(*self.index), 0
        if self.writer is None:
            chunk, file = self.index
            fingerprint = f"{zlib.crc32(repr((self.seed, chunk, file)).encode()):016x}"
            hf = {"info": {"features": _hf_features(table.schema)}, "fingerprint": fingerprint}
            path = self.root / "data" / f"chunk-{chunk:03d}" / f"file-{file:03d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(path, table.schema.with_metadata({"huggingface": json.dumps(hf)}))
        self.writer.write_table(table.replace_schema_metadata(self.writer.schema.metadata))
        self.size += size
        return self.index

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _size(table: pa.Table) -> int:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.tell()


def write_data(root: Path, *, lengths: list[int], fps: int, episode_tasks: list[str], image_cameras: dict,
               state_dim: int, seed: int, limit_bytes: int, render: Callable) -> tuple[list[dict], list[dict]]:
    """Write the data files; return per-episode ``meta/episodes`` rows (data and index columns)
    and per-episode stats of every data column. Tasks are indexed in order of first use."""
    tasks = list(dict.fromkeys(episode_tasks))
    data = _DataFiles(root, limit_bytes, seed)
    rows, stats, first = [], [], 0
    for e, n in enumerate(lengths):
        table, ep_stats = episode_table(e, n, first, tasks.index(episode_tasks[e]), fps=fps, state_dim=state_dim,
                                        seed=seed, image_cameras=image_cameras, render=render)
        chunk, file = data.add(table)
        rows.append({"episode_index": e, "tasks": [episode_tasks[e]], "length": n,
                     "data/chunk_index": chunk, "data/file_index": file,
                     "dataset_from_index": first, "dataset_to_index": first + n})
        stats.append(ep_stats)
        first += n
    data.close()
    return rows, stats
