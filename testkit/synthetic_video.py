"""Encode synthetic episode frames into lerobot-style concatenated mp4 files (PyAV).

Two layouts, both with files rolling over by size per camera:

* aligned (what lerobot does): each episode is encoded on its own, so it starts on a keyframe,
  then episodes are concatenated into the current file by packet remux with shifted timestamps.
  A new file starts when the current file plus the episode would reach the limit (lerobot's rule).
* unaligned: the same split into files, then one encoder per file fed every episode's frames in
  turn, keyframes every ``gop`` frames of the file, so episode starts fall inside GOPs.

The mp4 muxer picks the time base 1/(fps * 2**k) >= 1/10000 (1/15360 at 30 fps, like lerobot).
"""

from __future__ import annotations

import io
import os
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from lerobot_wds.packer.scheduling import scheduling_kept

from .synthetic_meta import image_stats, next_file

#: codec name -> (FFmpeg encoder, options). libsvtav1 as lerobot's default encoder; libx264 with
#: B-frames (frame reordering: pts != dts) and no scene-cut keyframes, so keyframes are periodic.
CODECS = {
    "av1": ("libsvtav1", {"crf": "30", "preset": "12"}),
    "h264": ("libx264", {"crf": "23", "preset": "veryfast", "bf": "2", "x264-params": "scenecut=0"}),
}


def _av():
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole config at info level
    try:
        import av
    except ImportError as e:  # pragma: no cover - av is a core dependency
        raise ImportError("synthetic datasets need PyAV: pip install av") from e
    return av


def video_path(root: Path, key: str, chunk: int, file: int) -> Path:
    return root / "videos" / key / f"chunk-{chunk:03d}" / f"file-{file:03d}.mp4"


def _open(av, target, fps: int, shape: tuple[int, int], codec: str, gop: int):
    out = av.open(target, "w", format="mp4")
    name, options = CODECS[codec]
    stream = out.add_stream(name, rate=fps)
    stream.height, stream.width = shape
    stream.pix_fmt = "yuv420p"
    stream.options = {**options, "g": str(gop)}
    return out, stream


def _encode(av, out, stream, frames: np.ndarray, first_pts: int, fps: int) -> None:
    """Encode and mux ``frames``, the first at frame number ``first_pts``."""
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = first_pts + i, Fraction(1, fps)
        out.mux(stream.encode(frame))


def _flush(out, stream) -> None:
    for packet in stream.encode(None):
        out.mux(packet)
    out.close()


def encode_episode(frames: np.ndarray, fps: int, codec: str, gop: int) -> bytes:
    """One episode as a standalone mp4 (bytes), starting on a keyframe."""
    av = _av()
    buf = io.BytesIO()
    with scheduling_kept():  # SVT-AV1 makes the thread real-time: packer/scheduling.py
        out, stream = _open(av, buf, fps, frames.shape[1:3], codec, gop)
        _encode(av, out, stream, frames, 0, fps)
        _flush(out, stream)
    return buf.getvalue()


def concat(episodes: list[tuple[bytes, int]], path: Path, fps: int) -> None:
    """Remux episode mp4s (bytes, frame count) into one file, episode k after episode k-1."""
    av = _av()
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = [av.open(io.BytesIO(data)) for data, _ in episodes]
    try:
        with av.open(str(path), "w", format="mp4") as out:
            ost = out.add_stream_from_template(inputs[0].streams.video[0], opaque=True)
            offset = Fraction(0)  # seconds before the current episode
            for inp, (_, n) in zip(inputs, episodes):
                ist = inp.streams.video[0]
                shift = int(offset / ist.time_base)
                for packet in inp.demux(ist):
                    if packet.size == 0:
                        continue
                    packet.pts += shift
                    packet.dts += shift
                    packet.stream = ost
                    out.mux(packet)
                offset += Fraction(n, fps)
    finally:
        for inp in inputs:
            inp.close()


def _row(key: str, chunk: int, file: int, start: float, n: int, fps: int) -> dict:
    p = f"videos/{key}/"
    return {p + "chunk_index": chunk, p + "file_index": file,
            p + "from_timestamp": start, p + "to_timestamp": start + n / fps}


def write_camera(root: Path, key: str, render: Callable[[int], np.ndarray], lengths: list[int], *,
                 fps: int, codec: str, gop: int, limit_bytes: int,
                 aligned: bool = True) -> tuple[list[dict], list[dict]]:
    """Write camera ``key``; return per-episode ``meta/episodes`` video columns and image stats.

    ``render(e)`` gives episode ``e``'s frames (n, H, W, 3) uint8. Files are filled by lerobot's
    rule on the size of each episode encoded alone; unaligned files are then encoded again in one
    go (frames rendered twice), so both layouts split episodes into the same files.
    """
    rows, stats, groups = [], [], [[]]
    chunk, file, size, start = 0, 0, 0, 0.0
    for e, n in enumerate(lengths):
        frames = render(e)
        data = encode_episode(frames, fps, codec, gop)
        stats.append(image_stats(frames))
        if groups[-1] and size + len(data) >= limit_bytes:
            chunk, file = next_file(chunk, file)
            groups.append([])
            size, start = 0, 0.0
        rows.append(_row(key, chunk, file, start, n, fps))
        start = rows[-1][f"videos/{key}/to_timestamp"]
        groups[-1].append((e, data))
        size += len(data)
    for group in groups:
        e0 = group[0][0]
        path = video_path(root, key, rows[e0][f"videos/{key}/chunk_index"], rows[e0][f"videos/{key}/file_index"])
        if aligned:
            concat([(data, lengths[e]) for e, data in group], path, fps)
        else:
            _encode_file(path, [render(e) for e, _ in group], fps, codec, gop)
    return rows, stats


def _encode_file(path: Path, episodes: Iterable[np.ndarray], fps: int, codec: str, gop: int) -> None:
    """Encode episodes back to back with one encoder: keyframes every ``gop`` frames of the file."""
    av = _av()
    path.parent.mkdir(parents=True, exist_ok=True)
    out = stream = None
    done = 0
    with scheduling_kept():
        for frames in episodes:
            if out is None:
                out, stream = _open(av, str(path), fps, frames.shape[1:3], codec, gop)
            _encode(av, out, stream, frames, done, fps)
            done += len(frames)
        _flush(out, stream)
