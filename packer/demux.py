"""The demux path's packet-level steps: choose an episode's packets, and mux them into a clip (PyAV).

Used by :class:`lerobot_wds.packer.clip.ClipCutter` when an mp4's sample table cannot stand in for demuxing
(B-frames, edit lists, fragments). ``select_packets`` words every error with the episode and the file.
"""

from __future__ import annotations

import bisect
import io
from typing import Any, Callable, NamedTuple

import av

from .videoprobe import ClipError

#: Muxer flags so clip bytes depend only on the packets (no creation time, no version strings).
MUX_OPTIONS = {"fflags": "+bitexact"}


class Pkt(NamedTuple):
    """One demuxed packet; timestamps in the stream's time base."""

    pts: int
    dts: int
    key: bool
    duration: int
    data: bytes


def select_packets(
    pkts: list[Pkt], dts_s: list[float], req: Any, fps: int, tb: float, where: str,
    indexed_end_s: Callable[[], float] = lambda: -1.0,
) -> tuple[list[Pkt], int, int]:
    """The clip's packets for ``req`` (a ClipRequest) and its lead_in, or an error naming the episode and file.

    ``dts_s`` is each packet's dts in seconds (non-decreasing); ``indexed_end_s()`` gives the last frame
    time the container's index lists, to tell a truncated file from a short video. Only the window from the keyframe
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
    if seen != list(range(req.length)) and indexed_end_s() >= req.from_timestamp + (req.length - 1) / fps - half:
        raise ClipError(
            f"episode {req.episode_index}: video {where} is truncated or damaged: its index lists frames up to "
            f"t={indexed_end_s():.4f}s but only {len(set(seen))} of the episode's {req.length} frames could be read"
        )
    if seen != list(range(req.length)):
        raise ClipError(
            f"episode {req.episode_index}: video {where} has {len(set(seen))} of the episode's "
            f"{req.length} frames from t={req.from_timestamp:.4f}s; the video is shorter than its episode "
            "(or its timestamps disagree with meta/episodes)"
        )
    clip = window[: max(inside) + 1]
    lead_in = sum(1 for f in frame_of[: len(clip)] if f < 0)
    return clip, lead_in, k


def mux_packets(stream: Any, clip: list[Pkt]) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4", options=MUX_OPTIONS) as out:
        o = out.add_stream_from_template(stream, opaque=True)
        tb = o.time_base = stream.time_base
        base = clip[0].dts
        for p in clip:
            q = av.Packet(p.data)
            q.pts, q.dts, q.duration = p.pts - base, p.dts - base, p.duration
            q.time_base, q.is_keyframe, q.stream = tb, p.key, o
            out.mux(q)
    return buf.getvalue()
