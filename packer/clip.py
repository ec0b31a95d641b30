"""Cut episodes' clips out of one source mp4 by packet remux (no re-encode), with PyAV.

LeRobot v3 concatenates many episodes into one mp4 per camera; episode frame ``i`` is the frame
presented at ``from_timestamp + i / fps`` (seconds). A clip holds the packets from the keyframe
at/before the episode's first frame up to the last packet (decode order) the episode's frames
need, timestamps rebased so the first dts is 0, in the source time base. Decoding it gives the
source's pixels bit for bit. ``lead_in`` counts the frames before the episode's first one.

A :class:`ClipCutter` holds the file open for a whole shard task. When the mp4's index is exact
(no B-frames; see ``sampletable.py``) it takes each clip's packets as one byte range of the file
(read into one reused buffer for local files) and writes the clip with ``mp4.py``, with no
per-packet FFmpeg work; FFmpeg only probes the file (``videoprobe.py``, cached). Otherwise it
demuxes forward through consecutive episodes (one seek to the keyframe before the first), never
from the start for each episode, and muxes with PyAV in bit-exact mode; its packet buffer holds about one episode.

Assumes closed GOPs (what LeRobot's encoders write) and one packet per frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import av

from ..format import ClipInfo

from .demux import MUX_OPTIONS, Pkt
from .demux import mux_packets as _mux
from .demux import select_packets as _select
from .sampletable import select_clip, table_clip_parts
from .videoprobe import ClipError, open_video, probe, probe_path

__all__ = ["ClipCutter", "ClipError", "ClipRequest", "MUX_OPTIONS", "Pkt", "open_video"]

#: Episodes further apart than this (seconds) are reached by a new seek instead of demuxing across.
RUN_GAP_S = 10.0
#: Read buffers of closed cutters, reused by the next ones in this process: a fresh buffer per
#: shard task cost ~15% of packing (zero-filling new pages).
_SPARE_BUFFERS: list[bytearray] = []


@dataclass(frozen=True)
class ClipRequest:
    """One episode to cut: its index, first frame time in the file (seconds), length in frames."""

    episode_index: int
    from_timestamp: float
    length: int


class ClipCutter:
    """One source mp4 held open; ``cut`` remuxes episodes out of it (index path, or demuxing forward).

    On the demux path, requests in time order (as episodes follow each other in LeRobot's files) cost one seek and a
    single forward demux; the packet buffer keeps only what the next episode may still need.
    A request behind the buffer or far ahead of it (> RUN_GAP_S) seeks instead.
    """

    def __init__(self, src: Any, where: str, fps: int, raw: Any = None) -> None:
        """``src``: path or binary file object PyAV reads; ``raw``: a second, independent handle on
        the same file for the sample-table path (opened here when ``src`` is a path). The cutter
        owns and closes both."""
        self.where, self.fps, self._src = where, fps, src
        self._pkts: list[Pkt] = []
        self._dts: list[float] = []
        self._it: Any = None
        #: Every table-path clip's packets are read into this one buffer (no fresh pages per clip).
        self._buf = _SPARE_BUFFERS.pop() if _SPARE_BUFFERS else bytearray()
        self._container: Any = None
        if isinstance(src, (str, bytes)) or hasattr(src, "__fspath__"):
            facts = probe_path(os.fsdecode(src), where)  # cached per file: no FFmpeg open per shard
            raw = raw if raw is not None else open(src, "rb", buffering=0)
        else:
            self._container = open_video(src, where)
            facts = probe(self._container, raw)
        self.codec, self.pix_fmt, self.width, self.height = facts.codec, facts.pix_fmt, facts.width, facts.height
        self._tb = float(facts.time_base)
        #: Table path: the file's sample table and a handle to read clip bytes (None: demux instead).
        self._file = raw
        self._table = facts.table

    @property
    def _video(self) -> Any:
        """The PyAV container, opened on first use (only the demux path needs it)."""
        if self._container is None:
            self._container = open_video(self._src, self.where)
        return self._container

    @property
    def _stream(self) -> Any:
        return self._video.streams.video[0]

    def _indexed_end(self) -> float:
        """Last timestamp (s) the container's index lists (-1 s: unknown, PyAV < 16); only words an error."""
        return max((e.timestamp for e in getattr(self._stream, "index_entries", None) or []), default=-1) * self._tb

    def _seek(self, start_s: float) -> None:
        self._video.seek(max(0, int(start_s / self._tb)), stream=self._stream, backward=True, any_frame=False)
        self._it, self._pkts, self._dts = self._video.demux(self._stream), [], []

    def _fill(self, end_s: float) -> None:
        """Demux until a packet's dts passes ``end_s`` (seconds) or the file ends."""
        while not self._dts or self._dts[-1] <= end_s:
            p = next(self._it, None)
            if p is None:
                self._it = iter(())
                return
            if p.size == 0 or p.pts is None:
                continue
            dts = p.dts if p.dts is not None else p.pts
            self._pkts.append(Pkt(p.pts, dts, bool(p.is_keyframe), p.duration or 0, bytes(p)))
            self._dts.append(dts * self._tb)

    def cut(self, req: ClipRequest) -> tuple[bytes, ClipInfo]:
        """The episode's clip bytes and where its frames sit in it; ClipError when frames are missing."""
        parts, info = self.cut_parts(req)
        return b"".join(parts), info

    def cut_parts(self, req: ClipRequest) -> tuple[Sequence[bytes | memoryview], ClipInfo]:
        """As :meth:`cut`, the clip as consecutive buffers, so that the packets are not copied again in
        Python. One may view the cutter's read buffer: use them before the next cut on this cutter."""
        end = req.from_timestamp + (req.length - 0.5) / self.fps
        if end / self._tb >= 2**62:  # past any video's end, and past what FFmpeg's seek can take
            raise ClipError(f"episode {req.episode_index}: video {self.where}: frames from {req.from_timestamp} s "
                            "asked for, past the video's end; meta/episodes is damaged")
        if self._table is not None:
            chosen = select_clip(self._table, req.from_timestamp, req.length, self.fps)
            if chosen is not None:
                return self._cut_table(req, *chosen)
            # else: demux, which words the error (missing frames, truncation) precisely
        try:
            fresh = self._it is None or not self._dts or req.from_timestamp < self._dts[0] \
                or req.from_timestamp > self._dts[-1] + RUN_GAP_S
            if fresh:
                self._seek(req.from_timestamp)
            self._fill(end)
            try:
                clip, lead_in, k = _select(self._pkts, self._dts, req, self.fps, self._tb, self.where, self._indexed_end)
            except ClipError:
                if fresh:
                    raise
                self._seek(req.from_timestamp)
                self._fill(end)
                clip, lead_in, k = _select(self._pkts, self._dts, req, self.fps, self._tb, self.where, self._indexed_end)
            data = _mux(self._stream, clip)
        except av.FFmpegError as e:
            raise ClipError(
                f"episode {req.episode_index}: video {self.where} cannot be demuxed ({e}); "
                "the file is damaged or truncated"
            ) from e
        del self._pkts[:k], self._dts[:k]
        info = ClipInfo(lead_in=lead_in, num_frames=len(clip), reencoded=False,
                        codec=self.codec, width=self.width, height=self.height)
        return (data,), info

    def _cut_table(self, req: ClipRequest, start: int, end: int, lead_in: int) -> tuple[tuple, ClipInfo]:
        t = self._table
        off, size = t.offset[start:end], t.size[start:end]
        first, stop = int(off[0]), int(off[-1] + size[-1])
        self._file.seek(first)
        if hasattr(self._file, "readinto"):
            if len(self._buf) < stop - first:  # a new buffer: views of the old one stay valid
                self._buf = bytearray(max(stop - first, 2 * len(self._buf)))
            span: bytes | memoryview = memoryview(self._buf)[: stop - first]
            got = 0
            while got < len(span) and (k := self._file.readinto(span[got:])):
                got += k
            span = span[:got]
        else:
            span = self._file.read(stop - first)
        if len(span) < stop - first:
            raise ClipError(
                f"episode {req.episode_index}: video {self.where} is truncated or damaged: it ends at byte "
                f"{first + len(span)}, its sample table lists data up to byte {stop}"
            )
        parts = table_clip_parts(t, start, end, span)
        info = ClipInfo(lead_in=lead_in, num_frames=end - start, reencoded=False,
                        codec=self.codec, width=self.width, height=self.height)
        return parts, info

    def close(self) -> None:
        """Close the container and the file: a file object passed in is owned by the cutter."""
        if self._container is not None:
            self._container.close()
        try:  # resizing fails while views of the buffer exist: then it is not handed on
            self._buf.append(0)
            del self._buf[-1]
            if len(_SPARE_BUFFERS) < 8:
                _SPARE_BUFFERS.append(self._buf)
        except BufferError:
            pass
        self._buf = bytearray()
        for f in (self._file, self._src):
            if hasattr(f, "close"):
                f.close()

