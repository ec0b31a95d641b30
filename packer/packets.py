"""Packet metadata of a source mp4, from its index when that is exact: no per-packet demux.

Demuxing with PyAV costs a few microseconds per packet in Python; the mp4's sample table (which
FFmpeg exposes as the stream's index entries: byte position, size, dts, keyframe flag) gives the
same packets without demuxing, and their bytes are then read as one contiguous range per clip.
This is exact only when presentation and decode order agree (no B-frames: pts == dts, as in
LeRobot's AV1) and no entry is marked discard. :func:`open_index` checks the codec and that the
first demuxed packet agrees with the index; :meth:`PacketIndex.window` checks each window it
returns and answers None when it is not exact, so the caller demuxes instead.
"""

from __future__ import annotations

import bisect
from typing import Any, NamedTuple

_AVINDEX_KEYFRAME = 1
_AVINDEX_DISCARD_FRAME = 2


class Pkt(NamedTuple):
    """One packet: timestamps in the stream's time base, ``data`` None until read (index path)."""

    pts: int
    dts: int
    key: bool
    duration: int
    data: bytes | None
    pos: int = -1
    size: int = 0


class PacketIndex:
    """The stream's index entries, read lazily: a window costs O(log n + its size) entry reads."""

    def __init__(self, entries: Any, tb: float) -> None:
        self._e, self._n, self._tb = entries, len(entries), tb

    def window(self, start_s: float, end_s: float) -> list[Pkt] | None:
        """Packets from the keyframe at/before ``start_s`` through the last with dts ≤ ``end_s`` (s)."""
        e, tb = self._e, self._tb
        lo = bisect.bisect_right(e, start_s, key=lambda x: x.timestamp * tb) - 1
        while lo > 0 and not e[lo].flags & _AVINDEX_KEYFRAME:
            lo -= 1
        hi = bisect.bisect_right(e, end_s, key=lambda x: x.timestamp * tb)
        rows = [(x.pos, x.size, x.timestamp, x.flags) for x in (e[i] for i in range(max(lo, 0), min(hi + 1, self._n)))]
        if not rows or any(f & _AVINDEX_DISCARD_FRAME for *_, f in rows):
            return None
        if any(b[2] <= a[2] for a, b in zip(rows, rows[1:])):
            return None  # timestamps must strictly increase in decode order
        last_step = rows[-1][2] - rows[-2][2] if len(rows) > 1 else 0
        out = [Pkt(ts, ts, bool(f & _AVINDEX_KEYFRAME), (rows[i + 1][2] if i + 1 < len(rows) else ts + last_step) - ts,
                   None, pos, size) for i, (pos, size, ts, f) in enumerate(rows)]
        return out[: hi - max(lo, 0)] if hi < self._n else out


def open_index(container: Any, stream: Any) -> PacketIndex | None:
    """The stream's PacketIndex, or None when the index cannot stand in for demuxing."""
    if stream.codec_context.has_b_frames:
        return None
    entries = stream.index_entries
    if entries is None or len(entries) == 0:
        return None
    first = next((p for p in container.demux(stream) if p.size), None)
    e0 = entries[0]
    if first is None or (first.pts, first.dts, first.pos) != (e0.timestamp, e0.timestamp, e0.pos):
        return None
    return PacketIndex(entries, float(stream.time_base))


def read_span(f: Any, pkts: list[Pkt], where: str) -> list[memoryview]:
    """Bytes of ``pkts`` (index packets, in file order) with one read; raises EOFError when cut short."""
    start = pkts[0].pos
    end = max(p.pos + p.size for p in pkts)
    f.seek(start)
    buf = memoryview(f.read(end - start))
    if len(buf) < end - start:
        raise EOFError(f"{where}: file ends at byte {start + len(buf)}, its index lists data up to byte {end}")
    return [buf[p.pos - start : p.pos - start + p.size] for p in pkts]  # views: no copies
