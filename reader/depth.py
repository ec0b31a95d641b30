"""Depth-map cameras: 12-bit codes decoded from the clip in memory, then dequantized as
``LeRobotDataset`` does.

lerobot 0.6.1 stores a depth camera (a video feature whose ``info`` says ``is_depth_map``) as
12-bit codes, ``gray12le`` frames (HEVC Main 12, lossless, by default), quantized between
``video.depth_min`` and ``video.depth_max`` metres, on a log scale shifted by ``video.shift`` when
``video.use_log``. It decodes them with PyAV, whatever its video backend, and turns the codes
into float32 ``(1, H, W)`` frames in millimetres (rounded to whole millimetres) or metres
(``depth_output_unit``). Here the codes come from a PyAV decoder over the clip's bytes, held per
pool episode like the colour cameras' decoders (``video.py``) and going front to back, and each
code becomes its value through a table of every code, computed with the same float32 torch
operations, in the same order, as lerobot's dequantization: the same values, bit for bit (the
decode is lossless, so no FFmpeg version changes the codes). Not measured for speed.
"""

from __future__ import annotations

import bisect
import io
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from ..format import DEPTH_UNITS

#: Codes are 12-bit: 0..4095.
_QMAX = (1 << 12) - 1
_MM_PER_M = 1000.0
_UINT16_MAX = 65535.0


def check_unit(unit: str) -> str:
    """``unit`` when it is one of :data:`DEPTH_UNITS`; a ValueError naming the choices otherwise."""
    if unit not in DEPTH_UNITS:
        raise ValueError(f"depth_output_unit={unit!r}; choose 'mm' or 'm'")
    return unit


@dataclass(frozen=True)
class DepthQuantization:
    """How a depth camera's codes map to metres: lerobot's ``DepthEncoderConfig`` fields, with its
    defaults for those a dataset does not record."""

    depth_min: float = 0.01
    depth_max: float = 10.0
    shift: float = 3.5
    use_log: bool = True

    @classmethod
    def of_feature(cls, key: str, feature: Mapping[str, Any]) -> DepthQuantization:
        """The quantization a dataset's ``info.json`` records for depth feature ``key`` (its
        ``info``'s ``video.depth_min``, ``video.depth_max``, ``video.shift``, ``video.use_log``)."""
        info = feature.get("info") or {}
        values = {name: info[f"video.{name}"] for name in ("depth_min", "depth_max", "shift", "use_log")
                  if info.get(f"video.{name}") is not None}
        try:
            if not isinstance(values.get("use_log", True), bool):
                raise TypeError("use_log is not true or false")
            q = cls(**{k: (v if k == "use_log" else float(v)) for k, v in values.items()})
            if not all(map(math.isfinite, (q.depth_min, q.depth_max, q.shift))):
                raise ValueError("not finite")
        except (TypeError, ValueError) as e:
            raise ValueError(f"depth feature {key!r}: its info holds a quantization that is not finite numbers "
                             f"({values}); fix meta/info.json and repack") from e
        if not q.depth_min < q.depth_max or (q.use_log and q.depth_min + q.shift <= 0):
            raise ValueError(f"depth feature {key!r}: its quantization needs depth_min < depth_max (and "
                             f"depth_min + shift > 0 with use_log), the info holds depth_min={q.depth_min}, "
                             f"depth_max={q.depth_max}, shift={q.shift}; fix meta/info.json and repack")
        try:
            deepest = q.table("m")[_QMAX].item()
        except RuntimeError:  # a bound torch cannot take as a float32 scalar
            deepest = math.inf
        if not math.isfinite(deepest):
            raise ValueError(f"depth feature {key!r}: depth_max={q.depth_max} is beyond what float32 holds; "
                             "fix meta/info.json and repack")
        return q

    def table(self, unit: str) -> torch.Tensor:
        """float32 value of every 16-bit code in ``unit`` ("mm" or "m"): lerobot's dequantization of
        all of them at once (its torch path: the same operations on float32, in the same order). A
        clip holds 12-bit codes; the codes above 4095 are there so that no code can index past the
        table, and get what lerobot would make of them."""
        check_unit(unit)
        if self.use_log:
            low, high = math.log(self.depth_min + self.shift), math.log(self.depth_max + self.shift)
        else:
            low, high = self.depth_min, self.depth_max
        values = torch.arange(1 << 16, dtype=torch.float32)
        values.mul_((high - low) / _QMAX).add_(low)
        if self.use_log:
            values.exp_().sub_(self.shift)
        values.clamp_(self.depth_min, self.depth_max)
        if unit == "mm":
            values.mul_(_MM_PER_M).round_().clamp_(0.0, _UINT16_MAX)
        return values


def dequantize(codes: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """float32 depth of uint16 ``codes`` (any shape) through :meth:`DepthQuantization.table`."""
    return table[codes.to(torch.int64)]


class DepthClipDecoder:
    """Frames of one depth clip in memory, by index in presentation order: :meth:`codes_at` gives
    frame ``i``'s codes as uint16 ``(1, H, W)``. Like torchcodec's exact mode, it reads the clip's
    packet timestamps once (no decoding) to know every frame's place, then decodes forward from
    the last frame it gave, and seeks to the keyframe at or before the frame asked for when that
    saves decoding (a jump ahead past a keyframe: the pool's first frame of an episode is anywhere
    in it) or when the frame is behind. PyAV's errors come out as ValueError, as torchcodec's do."""

    def __init__(self, clip: bytes | memoryview | torch.Tensor) -> None:
        import av

        self._av = av
        self._bytes = clip.numpy().tobytes() if isinstance(clip, torch.Tensor) else bytes(clip)
        self._open()
        pts, keys = [], []
        try:
            for packet in self._container.demux(self._stream):
                if packet.pts is not None:
                    pts.append(packet.pts)
                    if packet.is_keyframe:
                        keys.append(packet.pts)
        except self._av.FFmpegError as e:
            raise ValueError(str(e)) from e
        #: Presentation timestamps in presentation order: frame i's is ``_pts[i]``.
        self._pts = sorted(pts)
        self._index = {p: i for i, p in enumerate(self._pts)}
        self._keys = sorted(keys)
        ctx = self._stream.codec_context
        bits = {c.bits for c in ctx.format.components} if ctx.format is not None else set()
        if bits != {12}:  # any other format would be converted into codes it does not hold
            raise ValueError(f"its pixels are {ctx.pix_fmt}, not 12-bit depth codes (lerobot writes gray12le or "
                             "yuv420p12le); repack it from the source (pack keeps depth clips as recorded)")
        self.width, self.height, self.num_frames = ctx.width, ctx.height, len(self._pts)
        #: Frames decoded so far (seeks and skipped frames included).
        self.decoded = 0
        self._open()

    def _open(self) -> None:
        try:
            self._container = self._av.open(io.BytesIO(self._bytes))
        except self._av.FFmpegError as e:
            raise ValueError(str(e)) from e
        if not self._container.streams.video:
            raise ValueError("the clip holds no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.codec_context.thread_count = 1  # as every decoder here: video.py
        self._frames = self._container.decode(self._stream)
        self._next = 0  # index of the next frame the decoder gives

    def _seek_target(self, index: int) -> int | None:
        """The timestamp to seek to for frame ``index`` (its keyframe, or the first frame's), or
        None to decode on from here: seek when the frame is behind, or when its keyframe is past
        the next frame the decoder gives."""
        k = bisect.bisect_right(self._keys, self._pts[index]) - 1
        key = self._keys[k] if k >= 0 else self._pts[0]
        if index < self._next or (self._next < len(self._pts) and key > self._pts[self._next]):
            return key
        return None

    def codes_at(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} asked for; the clip has {self.num_frames}")
        try:
            key = self._seek_target(index)
            if key is not None:
                self._container.seek(key, stream=self._stream, backward=True, any_frame=False)
                self._stream.codec_context.flush_buffers()
                self._frames = self._container.decode(self._stream)
            while True:
                frame = next(self._frames, None)
                if frame is None:
                    raise IndexError(f"frame {index} asked for; the clip's frames ran out at {self._next}")
                self.decoded += 1
                at = self._index.get(frame.pts)
                if at is None:
                    raise ValueError(f"the decoder gave a frame at pts {frame.pts}, which no packet of the clip has")
                self._next = at + 1
                if at == index:
                    codes = frame.to_ndarray(format="gray12le")
                    return torch.from_numpy(np.ascontiguousarray(codes)).unsqueeze(0)
                if at > index:
                    raise ValueError(f"frame {index} asked for, the decoder went on to frame {at} without it")
        except self._av.FFmpegError as e:
            raise ValueError(str(e)) from e
