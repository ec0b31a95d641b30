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
from typing import BinaryIO

import numpy as np

_IDENTITY = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


def box_children(payload: bytes) -> dict[bytes, list[bytes]]:
    """Child boxes of a box payload: type → [child payload, ...] in file order."""
    out: dict[bytes, list[bytes]] = {}
    i, end = 0, len(payload)
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", payload[i : i + 8])
        head = 8
        if size == 1:
            size, head = struct.unpack(">Q", payload[i + 8 : i + 16])[0], 16
        elif size == 0:
            size = end - i
        if size < head:
            break
        out.setdefault(kind, []).append(payload[i + head : i + size])
        i += size
    return out


def read_moov(f: BinaryIO) -> bytes | None:
    """The top-level ``moov`` box payload of an mp4 file object, or None (seeks over other boxes;
    None too for a box that claims more bytes than the file has left: nothing is read past its end)."""
    end = f.seek(0, 2)
    f.seek(0)
    while True:
        head = f.read(8)
        if len(head) < 8:
            return None
        size, kind = struct.unpack(">I4s", head)
        if size == 1:
            large = f.read(8)
            if len(large) < 8:
                return None
            size = struct.unpack(">Q", large)[0] - 8
        if size == 0:
            size = end - f.tell() + 8  # the box runs to the end of the file
        if size < 8 or f.tell() + size - 8 > end:
            return None
        if kind == b"moov":
            return f.read(size - 8)
        f.seek(size - 8, 1)


def write_clip(
    durations: np.ndarray, sizes: np.ndarray, keys: np.ndarray, payload: bytes, timescale: int, stsd: bytes, tkhd_tail: bytes
) -> bytes:
    """An mp4 of one video track: samples back to back in ``payload`` (decode order, pts == dts from 0),
    ``durations`` in ``1/timescale`` s, ``keys`` flags; ``stsd`` and the tkhd matrix/size copied from the source."""
    return b"".join(clip_parts(durations, sizes, keys, payload, timescale, stsd, tkhd_tail))


def clip_parts(
    durations: np.ndarray, sizes: np.ndarray, keys: np.ndarray, payload: bytes | memoryview, timescale: int,
    stsd: bytes, tkhd_tail: bytes,
) -> tuple[bytes, bytes | memoryview, bytes]:
    """:func:`write_clip`'s bytes as (``ftyp`` + ``mdat`` header, ``payload`` itself, ``moov``): the
    payload, nearly all of the clip, is passed through uncopied."""
    n = len(durations)
    total = int(durations.sum())
    cuts = np.flatnonzero(np.diff(durations)) + 1
    starts = np.concatenate(([0], cuts))
    counts = np.diff(np.concatenate((starts, [n])))
    runs = np.stack([counts, durations[starts]], axis=1).astype(">u4").tobytes()
    stts = _full(b"stts", 0, 0, struct.pack(">I", len(starts)), runs)
    key_numbers = np.flatnonzero(keys) + 1
    stss = b"" if len(key_numbers) == n else _full(b"stss", 0, 0, struct.pack(">I", len(key_numbers)), key_numbers.astype(">u4").tobytes())
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2mp41")
    mdat_offset = len(ftyp) + 8
    stbl = _box(b"stbl", stsd, stts, stss,
                _full(b"stsc", 0, 0, struct.pack(">I3I", 1, 1, n, 1)),
                _full(b"stsz", 0, 0, struct.pack(">II", 0, n), np.asarray(sizes).astype(">u4").tobytes()),
                _full(b"stco", 0, 0, struct.pack(">II", 1, mdat_offset)))
    dinf = _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1)))
    minf = _box(b"minf", _full(b"vmhd", 0, 1, bytes(8)), dinf, stbl)
    hdlr = _full(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"VideoHandler\0")
    mdhd = _full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, total, 0x55C4, 0))
    tkhd = _full(b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, 1, 0, total), bytes(8), struct.pack(">hhhH", 0, 0, 0, 0), tkhd_tail)
    mvhd = _full(b"mvhd", 0, 0, struct.pack(">IIIIIH", 0, 0, timescale, total, 0x10000, 0x100), bytes(10), _IDENTITY,
                 bytes(24), struct.pack(">I", 2))
    moov = _box(b"moov", mvhd, _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf)))
    return ftyp + struct.pack(">I", 8 + len(payload)) + b"mdat", payload, moov
