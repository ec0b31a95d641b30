"""Cut episodes' clips out of one source mp4 by packet remux (no re-encode), with PyAV.

LeRobot v3 concatenates many episodes into one mp4 per camera; episode frame ``i`` is the frame
presented at ``from_timestamp + i / fps`` (seconds). A clip holds the packets from the keyframe
at/before the episode's first frame up to the last packet (decode order) the episode's frames
need, timestamps rebased so the first dts is 0, in the source time base. Decoding it gives the
source's pixels bit for bit. ``lead_in`` counts the frames before the episode's first one.

The file is opened once per call and demuxed once per *run* of nearby episodes (one seek to the
keyframe before the run, then forward), never from the start for each episode. Packets of the
run are held in memory (roughly the run's share of the file).

Assumes closed GOPs (what LeRobot's encoders write) and one packet per frame.
"""

from __future__ import annotations

import bisect
import io
from dataclasses import dataclass
from typing import Any, Sequence

from reader.format import ClipInfo

#: Muxer flags so clip bytes depend only on the packets (no creation time, no version strings).
MUX_OPTIONS = {"fflags": "+bitexact"}
#: Episodes further apart than this (seconds) are reached by a new seek instead of demuxing across.
RUN_GAP_S = 10.0


class ClipError(ValueError):
    """A clip cannot be cut; the message names the episode and the source mp4."""


@dataclass(frozen=True)
class ClipRequest:
    """One episode to cut: its index, first frame time in the file (seconds), length in frames."""

    episode_index: int
    from_timestamp: float
    length: int


@dataclass(frozen=True)
class _Pkt:
    pts: int
    dts: int
    key: bool
    duration: int
    data: bytes


def _import_av():
    try:
        import av
    except ImportError as e:  # pragma: no cover - av is a core dependency
        raise ImportError("PyAV is needed to cut clips: pip install av") from e
    return av


def _runs(requests: Sequence[ClipRequest], fps: int) -> list[list[ClipRequest]]:
    """Split time-sorted requests where the gap to the previous episode's end exceeds RUN_GAP_S."""
    runs: list[list[ClipRequest]] = []
    end = None
    for r in sorted(requests, key=lambda r: r.from_timestamp):
        if end is None or r.from_timestamp - end > RUN_GAP_S:
            runs.append([])
        runs[-1].append(r)
        end = max(end or 0.0, r.from_timestamp + r.length / fps)
    return runs


def _demux_run(container: Any, stream: Any, start_s: float, end_s: float) -> list[_Pkt]:
    """Packets (decode order) from the keyframe at/before ``start_s`` until dts passes ``end_s``."""
    tb = float(stream.time_base)
    container.seek(max(0, int(start_s / tb)), stream=stream, backward=True, any_frame=False)
    out = []
    for p in container.demux(stream):
        if p.size == 0 or p.pts is None:
            continue
        if p.dts is not None and p.dts * tb > end_s:
            break
        out.append(_Pkt(p.pts, p.dts if p.dts is not None else p.pts, bool(p.is_keyframe), p.duration or 0, bytes(p)))
    return out


def _select(pkts: list[_Pkt], dts_s: list[float], req: ClipRequest, fps: int, tb: float, where: str) -> tuple[list[_Pkt], int]:
    """The clip's packets for ``req`` and its lead_in, or an error naming the episode and file.

    ``dts_s`` is each packet's dts in seconds (non-decreasing). Only the window from the keyframe
    before the episode to the first packet decoded after its last frame is scanned.
    """
    half = 0.5 / fps
    hi = bisect.bisect_right(dts_s, req.from_timestamp + (req.length - 1) / fps + half)
    k = bisect.bisect_right(dts_s, req.from_timestamp + half) - 1
    while k >= 0 and not (pkts[k].key and pkts[k].pts * tb <= req.from_timestamp + half):
        k -= 1
    if k < 0:
        raise ClipError(
            f"episode {req.episode_index}: video {where}: no keyframe at or before the episode's first "
            f"frame (t={req.from_timestamp:.4f}s); the video is shorter than its episode or damaged"
        )
    window = pkts[k:hi]
    frame_of = [round((p.pts * tb - req.from_timestamp) * fps) for p in window]
    inside = [j for j, f in enumerate(frame_of) if 0 <= f < req.length]
    seen = sorted(frame_of[j] for j in inside)
    if seen != list(range(req.length)):
        raise ClipError(
            f"episode {req.episode_index}: video {where} has {len(set(seen))} of the episode's "
            f"{req.length} frames from t={req.from_timestamp:.4f}s; the video is shorter than its episode "
            "(or its timestamps disagree with meta/episodes)"
        )
    clip = window[: max(inside) + 1]
    lead_in = sum(1 for f in frame_of[: len(clip)] if f < 0)
    return clip, lead_in


def _mux(stream: Any, clip: list[_Pkt]) -> bytes:
    av = _import_av()
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4", options=MUX_OPTIONS) as out:
        o = out.add_stream_from_template(stream, opaque=True)
        o.time_base = stream.time_base
        base = clip[0].dts
        for p in clip:
            q = av.Packet(p.data)
            q.pts, q.dts, q.duration = p.pts - base, p.dts - base, p.duration
            q.time_base, q.is_keyframe, q.stream = stream.time_base, p.key, o
            out.mux(q)
    return buf.getvalue()


def open_video(src: Any, where: str) -> Any:
    """Open an mp4 (path or binary file object) with PyAV; a damaged file gives a ClipError naming it."""
    av = _import_av()
    try:
        container = av.open(src, "r")
        if not container.streams.video:
            raise ClipError(f"video {where}: has no video stream")
        return container
    except av.FFmpegError as e:
        raise ClipError(f"video {where}: cannot be opened ({e}); the file is damaged or truncated") from e


def cut_clips(src: Any, where: str, requests: Sequence[ClipRequest], fps: int) -> dict[int, tuple[bytes, ClipInfo]]:
    """Remux each requested episode of the mp4 ``src`` into its own clip: episode_index → (bytes, info).

    ``where`` names the file in errors. Raises ClipError when a frame is missing (video shorter than
    its episode) or the file cannot be demuxed (truncated).
    """
    av = _import_av()
    container = open_video(src, where)
    try:
        stream = container.streams.video[0]
        tb = float(stream.time_base)
        cc = stream.codec_context
        out: dict[int, tuple[bytes, ClipInfo]] = {}
        for run in _runs(requests, fps):
            start = run[0].from_timestamp
            end = max(r.from_timestamp + (r.length - 0.5) / fps for r in run)
            try:
                pkts = _demux_run(container, stream, start, end)
            except av.FFmpegError as e:
                eps = ", ".join(str(r.episode_index) for r in run)
                raise ClipError(f"episode {eps}: video {where} cannot be demuxed ({e}); the file is damaged or truncated") from e
            dts_s = [p.dts * tb for p in pkts]
            for r in run:
                clip, lead_in = _select(pkts, dts_s, r, fps, tb, where)
                info = ClipInfo(lead_in=lead_in, num_frames=len(clip), reencoded=False,
                                codec=cc.codec.canonical_name, width=cc.width, height=cc.height)
                out[r.episode_index] = (_mux(stream, clip), info)
        return out
    finally:
        container.close()


def probe(src: Any, where: str) -> dict[str, Any]:
    """codec, pix_fmt, width, height of an mp4's first video stream (for the manifest's ``videos``)."""
    container = open_video(src, where)
    try:
        cc = container.streams.video[0].codec_context
        return {"codec": cc.codec.canonical_name, "pix_fmt": cc.pix_fmt, "width": cc.width, "height": cc.height}
    finally:
        container.close()
