"""A source mp4's video sample table as numpy arrays, and the pure choice of an episode's clip in it.

The ``moov`` box already lists every sample's decode time (``stts``), size (``stsz``), byte offset
(``stsc`` + ``stco``/``co64``) and keyframe flag (``stss``). Reading those tables once per file
replaces demuxing packet by packet: choosing a clip is a ``searchsorted``, and its bytes are one
ranged read. This stands in for demuxing only when presentation and decode order agree, so the
table is refused (None) when the track has composition offsets (``ctts``, i.e. B-frames) or an
edit list (``elst``) other than FFmpeg's default whole-track one; the caller then demuxes with PyAV.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property
from typing import BinaryIO

import numpy as np

from .mp4 import box_children, clip_parts, read_moov


@dataclass(frozen=True)
class SampleTable:
    """One video track: per sample (decode order) ``dts``/``duration`` in ``1/timescale`` s, ``size``,
    ``offset`` (bytes in the file), ``key``; plus what a clip's ``moov`` copies (``stsd``, tkhd tail)."""

    dts: np.ndarray
    duration: np.ndarray
    size: np.ndarray
    offset: np.ndarray
    key: np.ndarray
    timescale: int
    stsd: bytes
    tkhd_tail: bytes

    @cached_property
    def seconds(self) -> np.ndarray:
        """``dts`` in seconds (float64), computed once per table, not once per clip."""
        return self.dts / self.timescale

    @cached_property
    def keyframes(self) -> np.ndarray:
        """Sample numbers (decode order) of the keyframes, ascending."""
        return np.flatnonzero(self.key)


def _u32(b: bytes, n: int, at: int = 0) -> np.ndarray:
    return np.frombuffer(b, dtype=">u4", count=n, offset=at).astype(np.int64)


def _trivial_edits(moov: bytes, edts: bytes, mdhd: bytes) -> bool:
    """True for the edit list FFmpeg writes by default: one edit, media time 0, rate 1, whole track."""
    elst = box_children(edts).get(b"elst", [b""])[0]
    if len(elst) < 8 or struct.unpack(">I", elst[4:8])[0] != 1:
        return False
    if elst[0] == 1:
        seg, media_time, rate = struct.unpack(">QqI", elst[8:28])
    else:
        seg, media_time, rate = struct.unpack(">IiI", elst[8:20])
    mvhd = box_children(moov).get(b"mvhd", [b""])[0]
    if media_time != 0 or rate != 0x10000 or not mvhd:
        return False
    movie_scale = struct.unpack(">I", mvhd[20:24] if mvhd[0] == 1 else mvhd[12:16])[0]
    media_scale, media_dur = (struct.unpack(">IQ", mdhd[20:32]) if mdhd[0] == 1 else struct.unpack(">II", mdhd[12:20]))
    return seg * media_scale >= media_dur * movie_scale - media_scale  # covers the media (rounding)


def read_sample_table(f: BinaryIO) -> SampleTable | None:
    """The first video track's table, or None when absent or not exact (ctts, elst, fragments), or
    when its boxes do not hold together (counts their boxes cannot hold or the file's bytes cannot
    hold, sample numbers past the end, samples not in file order): the caller then demuxes with
    FFmpeg, which says what is wrong with a damaged file. Nothing is allocated from a count before
    it is checked against the bytes that carry it."""
    try:
        return _read_sample_table(f)
    except (ValueError, IndexError, struct.error):  # a box shorter than its fields
        return None


def _read_sample_table(f: BinaryIO) -> SampleTable | None:
    file_bytes = f.seek(0, 2)
    moov = read_moov(f)
    if moov is None or b"mvex" in box_children(moov):
        return None
    for trak in box_children(moov).get(b"trak", []):
        t = box_children(trak)
        if b"mdia" not in t or b"tkhd" not in t:
            continue
        mdia = box_children(t[b"mdia"][0])
        hdlr, mdhd = mdia.get(b"hdlr", [b""])[0], mdia.get(b"mdhd", [b""])[0]
        if hdlr[8:12] != b"vide" or not mdhd or b"minf" not in mdia:
            continue
        if b"edts" in t and not _trivial_edits(moov, t[b"edts"][0], mdhd):
            return None  # an edit list that shifts or cuts presentation: let FFmpeg apply it
        stbl_l = box_children(mdia[b"minf"][0]).get(b"stbl")
        if not stbl_l:
            continue
        stbl = {k: v[0] for k, v in box_children(stbl_l[0]).items()}
        if b"ctts" in stbl or b"stsd" not in stbl or b"stts" not in stbl or b"stsz" not in stbl or b"stsc" not in stbl:
            return None
        timescale = struct.unpack(">I", mdhd[20:24] if mdhd[0] == 1 else mdhd[12:16])[0]
        stts = stbl[b"stts"]
        runs = _u32(stts, 2 * struct.unpack(">I", stts[4:8])[0], 8).reshape(-1, 2)
        stsz = stbl[b"stsz"]
        fixed, count = struct.unpack(">II", stsz[4:12])
        n = int(runs[:, 0].sum())
        # The arrays below take about 48 bytes a sample: never more than the file itself (a file of
        # samples that small, or whose fixed-size samples do not fit it, is demuxed instead).
        if n != count or count * 48 > file_bytes or fixed * count > file_bytes:
            return None
        duration = np.repeat(runs[:, 1], runs[:, 0])
        size = np.full(count, fixed, np.int64) if fixed else _u32(stsz, count, 12)
        if b"stco" in stbl:
            chunks = _u32(stbl[b"stco"], struct.unpack(">I", stbl[b"stco"][4:8])[0], 8)
        elif b"co64" in stbl:
            c64 = stbl[b"co64"]
            chunks = np.frombuffer(c64, ">u8", struct.unpack(">I", c64[4:8])[0], 8).astype(np.int64)
        else:
            return None
        stsc = _u32(stbl[b"stsc"], 3 * struct.unpack(">I", stbl[b"stsc"][4:8])[0], 8).reshape(-1, 3)
        first = stsc[:, 0] - 1
        per_chunk = np.repeat(stsc[:, 1], np.diff(np.append(first, len(chunks))))
        if per_chunk.sum() != n or (first < 0).any() or (np.diff(first) <= 0).any():
            return None
        chunk_of = np.repeat(np.arange(len(chunks)), per_chunk)
        ends = np.cumsum(size)
        chunk_start = np.repeat(np.cumsum(per_chunk) - per_chunk, per_chunk)
        offset = chunks[chunk_of] + (ends - size) - (ends - size)[chunk_start]
        if n and ((np.diff(offset) < size[:-1]).any() or offset[0] < 0 or offset[-1] + size[-1] > file_bytes):
            return None  # samples overlapping, out of file order or past the file's end: a clip is one span
        key = np.ones(n, bool)
        if b"stss" in stbl:
            numbers = _u32(stbl[b"stss"], struct.unpack(">I", stbl[b"stss"][4:8])[0], 8)
            if (numbers < 1).any() or (numbers > n).any():
                return None
            key[:] = False
            key[numbers - 1] = True
        dts = np.cumsum(duration) - duration
        return SampleTable(dts, duration, size, offset, key, timescale,
                           stsd=struct.pack(">I", 8 + len(stbl[b"stsd"])) + b"stsd" + stbl[b"stsd"],
                           tkhd_tail=t[b"tkhd"][0][-44:])
    return None


def select_clip(table: SampleTable, from_s: float, length: int, fps: int) -> tuple[int, int, int] | None:
    """Samples ``[start, end)`` of the clip for frames at ``from_s + i / fps`` (i < length), and its
    lead_in; None when the file lacks some of those frames or a keyframe before them."""
    t = table.seconds
    half = 0.5 / fps
    lo = int(np.searchsorted(t, from_s - half, side="left"))
    hi = int(np.searchsorted(t, from_s + (length - 1) / fps + half, side="right"))
    frames = np.rint((t[lo:hi] - from_s) * fps).astype(np.int64)
    if hi - lo != length or not np.array_equal(frames, np.arange(length)):
        return None
    k = int(np.searchsorted(table.keyframes, lo, side="right")) - 1  # last keyframe at or before lo
    if k < 0:
        return None
    start = int(table.keyframes[k])
    return start, hi, lo - start


def table_clip_parts(table: SampleTable, start: int, end: int, span: bytes | memoryview) -> tuple:
    """The clip of samples ``[start, end)`` as :func:`lerobot_wds.packer.mp4.clip_parts` buffers; ``span`` holds
    the file's bytes from the first sample's offset to the last sample's end."""
    off, size = table.offset[start:end], table.size[start:end]
    if np.array_equal(off[1:], off[:-1] + size[:-1]):
        payload = span  # samples back to back (one track): the span is the clip's mdat, uncopied
    else:
        view, first = memoryview(span), int(off[0])
        payload = b"".join(view[o - first : o - first + n] for o, n in zip(off.tolist(), size.tolist()))
    return clip_parts(table.duration[start:end], size, table.key[start:end], payload, table.timescale,
                      table.stsd, table.tkhd_tail)
