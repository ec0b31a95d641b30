"""What a source mp4 is (codec, size, time base, exact sample table), probed once per file per process.

Every shard task cuts clips out of the same few concatenated LeRobot mp4s, and probing one costs
an FFmpeg open (~1.5 ms: reads and parses the whole ``moov``) plus parsing the sample table: with
small shards that was a quarter of the packing time. :func:`probe_path` therefore keeps the facts
of local files, keyed by (path, inode, size, mtime in ns) so that a file changed on disk is probed again.
File objects (remote sources) are probed each time; a network read dwarfs the probe there.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from ..errors import LeRobotWdsError
from .sampletable import SampleTable, read_sample_table

_CACHE: OrderedDict[tuple, "VideoFacts"] = OrderedDict()
_CACHE_SIZE = 256  # files; a facts entry is the sample table: ~20 bytes per frame


class ClipError(LeRobotWdsError, ValueError):
    """A clip cannot be cut; the message names the episode and the source mp4."""


@dataclass(frozen=True)
class VideoFacts:
    """The first video stream: codec name, pix_fmt, width/height (pixels), time base (seconds per
    tick), and the sample table when it agrees with FFmpeg (None: clips must be demuxed)."""

    codec: str
    pix_fmt: str
    width: int
    height: int
    time_base: Fraction
    table: SampleTable | None


def open_video(src: Any, where: str) -> Any:
    """Open an mp4 (path or binary file object) with PyAV; a damaged file gives a ClipError naming it."""
    try:
        container = av.open(src, "r")
        if not container.streams.video:
            container.close()
            raise ClipError(f"video {where}: has no video stream")
        return container
    except av.FFmpegError as e:
        raise ClipError(f"video {where}: cannot be opened ({e}); the file is damaged or truncated") from e


def probe(container: Any, raw: Any) -> VideoFacts:
    """Facts of ``container``'s first video stream; ``raw`` is an independent handle on the same file
    (or None) from which the sample table is read and checked against FFmpeg's first packet."""
    stream = container.streams.video[0]
    cc = stream.codec_context
    table = None
    if raw is not None:
        first = next((p for p in container.demux(stream) if p.size), None)
        table = read_sample_table(raw)
        # FFmpeg's sample count: its index (PyAV >= 16), else the stream's frame count (PyAV 15,
        # lerobot 0.6.1's; for mp4 that is the stsz sample count).
        count = len(stream.index_entries or ()) if hasattr(stream, "index_entries") else stream.frames
        if first is None or table is None or stream.time_base != Fraction(1, table.timescale) \
                or count != len(table.dts) \
                or (first.pts, first.dts, first.pos, first.size) != (table.dts[0], table.dts[0], table.offset[0], table.size[0]):
            table = None
    return VideoFacts(cc.codec.canonical_name, cc.pix_fmt, cc.width, cc.height, stream.time_base, table)


def probe_path(path: str, where: str) -> VideoFacts:
    """Facts of the local mp4 ``path``, from the cache when the file is unchanged since its probe."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise ClipError(f"video {where}: cannot be opened ({e})") from e
    key = (os.fspath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    facts = _CACHE.get(key)
    if facts is not None:
        _CACHE.move_to_end(key)
        return facts
    with open_video(path, where) as container, open(path, "rb") as raw:
        facts = probe(container, raw)
    _CACHE[key] = facts
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return facts
