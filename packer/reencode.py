"""Optional re-encode of a clip, for users who ask (``--codec``, ``--gop``, ``--crf``, ``--size``).

Starts from the remuxed clip (so the source is still demuxed once), decodes it, drops the lead-in,
and encodes exactly the episode's frames at ``fps`` with the requested settings. The result has
``lead_in`` 0 and ``reencoded`` true; its pixels are those of the new encode, not the source's.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from fractions import Fraction

from ..errors import UsageError
from ..format import ClipInfo

from .clip import MUX_OPTIONS, ClipError
from .scheduling import scheduling_kept

#: FFmpeg encoder used for each ``--codec`` value.
ENCODERS = {"av1": "libsvtav1", "h264": "libx264", "hevc": "libx265"}

#: Encoder options beyond ``g`` and ``crf``: h264 without B-frames; x265's own log at errors only
#: (at its default it writes a dozen lines a clip to stderr, through the progress bar).
CODEC_OPTIONS = {"h264": {"bf": "0"}, "hevc": {"x265-params": "log-level=error"}}


@dataclass(frozen=True)
class ReencodeSpec:
    """Re-encode settings; ``size`` is (height, width) in pixels or None to keep the source size."""

    codec: str = "av1"
    gop: int = 2
    crf: int = 30
    size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.codec not in ENCODERS:
            raise UsageError(f"--codec {self.codec!r}: choose one of {sorted(ENCODERS)}")
        if self.gop < 1 or not 0 <= self.crf <= 63:
            raise UsageError(f"--gop {self.gop} / --crf {self.crf}: gop must be ≥ 1 and crf in 0–63")

    def to_dict(self) -> dict:
        return {"codec": self.codec, "gop": self.gop, "crf": self.crf, "size": list(self.size) if self.size else None}


def reencode_clip(clip: bytes, info: ClipInfo, length: int, fps: int, spec: ReencodeSpec, where: str) -> tuple[bytes, ClipInfo]:
    """Encode frames ``lead_in .. lead_in+length-1`` of a remuxed clip anew; returns (bytes, info)."""
    import av

    src = av.open(io.BytesIO(clip))
    frames = [f for f in src.decode(video=0)][info.lead_in : info.lead_in + length]
    src.close()
    if len(frames) != length:
        raise ClipError(f"{where}: decoded {len(frames)} of {length} frames while re-encoding")
    height, width = spec.size or (info.height, info.width)
    if spec.codec == "av1":
        # SVT-AV1 prints its settings to stderr as well, unless SVT_LOG says otherwise; it reads the
        # variable once per process, when it first logs. 1: errors only. A user's own setting stays.
        os.environ.setdefault("SVT_LOG", "1")
    buf = io.BytesIO()
    with scheduling_kept(), av.open(buf, "w", format="mp4", options=MUX_OPTIONS) as out:
        s = out.add_stream(ENCODERS[spec.codec], rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.time_base = Fraction(1, fps)
        s.options = {"g": str(spec.gop), "crf": str(spec.crf), **CODEC_OPTIONS.get(spec.codec, {})}
        s.codec_context.flags |= getattr(av.codec.context.Flags, "bitexact", 0)
        for i, f in enumerate(frames):
            g = f.reformat(width=width, height=height, format="yuv420p")
            g.pts, g.time_base = i, Fraction(1, fps)
            out.mux(s.encode(g))
        out.mux(s.encode(None))
    new = ClipInfo(lead_in=0, num_frames=length, reencoded=True, codec=spec.codec, width=width, height=height)
    return buf.getvalue(), new
