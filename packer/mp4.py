"""A minimal mp4 writer for remuxed clips: one video track, packets as they are, no per-packet FFmpeg.

Muxing through PyAV costs a few microseconds of Python and FFmpeg per packet; for clips of
hundreds of small packets that was most of the packing time. A clip whose packets need no
composition offsets (pts == dts, e.g. LeRobot's AV1) is written here directly: ``ftyp``, one
``mdat`` with the packets back to back, then ``moov`` whose sample description (``stsd``, which
holds the codec configuration such as ``av1C``/``avcC``) is copied byte for byte from the source
file. Everything else is derived from the packets, so the bytes are deterministic and decoding
gives the source's pixels. Clips with B-frames (pts != dts) go through PyAV instead.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO, Sequence

from .packets import Pkt

_IDENTITY = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


def _children(data: bytes, start: int, end: int) -> dict[bytes, list[tuple[int, int]]]:
    """Child boxes of ``data[start:end]``: type → [(payload start, box end)]."""
    out: dict[bytes, list[tuple[int, int]]] = {}
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        head = 8
        if size == 1:
            size, head = struct.unpack(">Q", data[i + 8 : i + 16])[0], 16
        elif size == 0:
            size = end - i
        if size < head:
            break
        out.setdefault(kind, []).append((i + head, i + size))
        i += size
    return out


def read_moov(f: BinaryIO) -> bytes | None:
    """The top-level ``moov`` box payload of an mp4 file object, or None (seeks over other boxes)."""
    f.seek(0)
    while True:
        head = f.read(8)
        if len(head) < 8:
            return None
        size, kind = struct.unpack(">I4s", head)
        if size == 1:
            size = struct.unpack(">Q", f.read(8))[0] - 8
        if kind == b"moov":
            return f.read(size - 8) if size else f.read()
        if size < 8:
            return None
        f.seek(size - 8, 1)


def video_sample_entry(moov: bytes) -> tuple[bytes, bytes, int] | None:
    """(stsd box, tkhd matrix+width+height bytes, timescale) of the first video track, or None."""
    for t0, t1 in _children(moov, 0, len(moov)).get(b"trak", []):
        trak = _children(moov, t0, t1)
        if b"mdia" not in trak or b"tkhd" not in trak:
            continue
        m0, m1 = trak[b"mdia"][0]
        mdia = _children(moov, m0, m1)
        h0, _ = mdia.get(b"hdlr", [(0, 0)])[0]
        if not h0 or moov[h0 + 8 : h0 + 12] != b"vide" or b"mdhd" not in mdia or b"minf" not in mdia:
            continue
        d0, _ = mdia[b"mdhd"][0]
        timescale = struct.unpack(">I", moov[d0 + (20 if moov[d0] == 1 else 12) :][:4])[0]
        i0, i1 = mdia[b"minf"][0]
        stbl = _children(moov, i0, i1).get(b"stbl")
        if not stbl:
            continue
        sd = _children(moov, *stbl[0]).get(b"stsd")
        if not sd:
            continue
        s0, s1 = sd[0]
        k0, k1 = trak[b"tkhd"][0]
        return _box(b"stsd", moov[s0:s1]), moov[k1 - 44 : k1], timescale
    return None


def write_clip(clip: Sequence[Pkt], datas: Sequence[bytes], entry: tuple[bytes, bytes, int]) -> bytes:
    """An mp4 of ``clip`` (pts == dts, rebased so the first is 0) with the source's sample entry."""
    stsd, tkhd_tail, timescale = entry
    n = len(clip)
    durations = [p.duration for p in clip]
    total = sum(durations)
    runs: list[list[int]] = []
    for d in durations:
        if runs and runs[-1][1] == d:
            runs[-1][0] += 1
        else:
            runs.append([1, d])
    stts = _full(b"stts", 0, 0, struct.pack(f">I{2 * len(runs)}I", len(runs), *[v for r in runs for v in r]))
    keys = [i + 1 for i, p in enumerate(clip) if p.key]
    stss = b"" if len(keys) == n else _full(b"stss", 0, 0, struct.pack(f">I{len(keys)}I", len(keys), *keys))
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2mp41")
    mdat_offset = len(ftyp) + 8
    stbl = _box(b"stbl", stsd, stts, stss,
                _full(b"stsc", 0, 0, struct.pack(">I3I", 1, 1, n, 1)),
                _full(b"stsz", 0, 0, struct.pack(f">II{n}I", 0, n, *[len(d) for d in datas])),
                _full(b"stco", 0, 0, struct.pack(">II", 1, mdat_offset)))
    dinf = _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1)))
    minf = _box(b"minf", _full(b"vmhd", 0, 1, bytes(8)), dinf, stbl)
    hdlr = _full(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"VideoHandler\0")
    mdhd = _full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, total, 0x55C4, 0))
    tkhd = _full(b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, 1, 0, total), bytes(8), struct.pack(">hhhH", 0, 0, 0, 0), tkhd_tail)
    mvhd = _full(b"mvhd", 0, 0, struct.pack(">IIIIIH", 0, 0, timescale, total, 0x10000, 0x100), bytes(10), _IDENTITY,
                 bytes(24), struct.pack(">I", 2))
    moov = _box(b"moov", mvhd, _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf)))
    payload = b"".join(datas)
    return ftyp + struct.pack(">I", 8 + len(payload)) + b"mdat" + payload + moov


def sample_entry_of(f: Any) -> tuple[bytes, bytes, int] | None:
    """The source's video sample entry (see :func:`video_sample_entry`), or None if not found."""
    moov = read_moov(f)
    return video_sample_entry(moov) if moov else None
