"""Decoding an episode's camera clips in memory, each needed frame once.

A decoder per pool episode and camera, built from the clip bytes on first use and dropped when the
episode leaves the pool, held between draws: a decoder opened for the frame the pool asks for next
costs 3.6-5.0 ms at 480x640 and 1.4-4.4 ms at 240x320 (``approximate`` and ``exact`` seek modes),
against 1.4-1.7 and 0.4-0.6 ms from the held one (``tools/bench_frame_costs.py``, two runs). On
the CPU, an AV1 clip of at most two frames a GOP (lerobot's writer's) in the colours where PyAV's
pixels equal torchcodec's decodes through a codec context every episode shares, and the episode
holds at most one decoded frame instead of a decoder (``shared_decoder.py``); every other clip
(other codecs, longer GOPs, BT.709, a GPU) gets a torchcodec ``VideoDecoder`` of its own, as does
a clip the shared path hands over mid-way. The pool draws an episode's frames in file order (from a
random start, wrapping once: ``pool.py``), so a miss decodes forward, frame by frame, from the
first missing frame to the last one asked for: the decoder goes front to back, every frame
decoded once, window frames shared. Only the frames the next sample's window can still use are
kept (the backward and forward window reach), none for a camera without a window, and the shared
decoder's as decoded, 4:2:0, half the bytes of RGB, converted at each use
(``shared_decoder.PlanarFrame``): a pool of many episodes costs their compressed bytes and
decoders (a torchcodec decoder 2.5 MB at 480x640 with one thread, 8 frames in; the shared path
0.6 MB, mostly its one decoded 4:2:0 frame: ``tools/bench_frame_costs.py``), not their frames.

Frames come out as uint8 ``(N, C, H, W)`` in their own storage (copied with numpy:
no torch intra-op threads, which on a busy machine made a 1 MB copy cost milliseconds), or are
written into memory the caller gives (:meth:`EpisodeVideo.frames_into`: a batch's rows, batch.py);
:func:`to_float` makes LeRobot's float32 in [0, 1] exactly as LeRobot does (``u8 / 255.0``), bit
for bit.

Frames of the shared decoder come planar from their conversion (``shared_decoder.PlanarFrame``:
swscale's ``gbrp`` planes, which swscale itself writes in RGB order straight into a batch's row
or a sample's tensor, so no copy follows the conversion and every later copy is a plain one, in
workers and in the training process alike; +5 to +16 % samples/s end to end against PyAV's
converted frame copied in: ``shared_decoder._Swscale``, docs/performance.md). Against ``rgb24``
deinterleaved by ``cv2.split`` (or left as torchcodec's layout in the training process), three
interleaved A/B rounds of ``tools/bench_peers.py --child`` rows at 480x640, medians: batches with
windows +5 % samples/s at 0 and at 2 workers; single samples +17 % / +9 % without / with windows
at 0 workers, +7 % / -2 % at 2; peak RSS within 0.08 GB.

For torchcodec's frames, ``planar=True`` (what the dataset sets in DataLoader workers for single
samples; its batches get each frame deinterleaved straight into its row instead) deinterleaves
each frame once, at decode, into contiguous storage: torchcodec hands out ``(C, H, W)`` views of interleaved
``(H, W, C)`` pixels, so left as they are every later copy is a transpose: collate into the
batch, and a window's stack for every sample that holds the frame. ``cv2.split`` deinterleaves a
480x640 frame in 0.09-0.14 ms (numpy and torch: 0.30-0.42 ms), after which every stack is a plain
copy (0.07-0.13 ms a frame instead of 0.35-0.40; ``tools/bench_frame_costs.py``, four runs).
Measured end to end (A/B of ``tools/bench_peers.py``'s child rows): +5 % samples/s at 2 workers
without windows, +11 % with; but slower in the training process itself (``num_workers=0``), where
collate transposes with torch's intra-op threads on every core: -5 % with one decode thread, and
-6 to -12 % with the frames deinterleaved on the decode threads (three interleaved A/B rounds),
and -7 / -8 % deinterleaving only the cameras with a window (whose frames each go into two
samples' stacks; two A/B rounds of ``tools/bench_peers.py --child``, 0 workers, windows).

Decoders run one FFmpeg thread each, everywhere. In DataLoader workers the workers are the
parallelism (they already keep every core busy: two processes at 2 threads each decoded 7 % slower
than at 1). In the training process (``num_workers=0``), where loading runs between training steps
and the other cores wait, the dataset decodes :data:`MAIN_DECODE_STREAMS` samples of different
episodes at once, on threads of its own (torchcodec releases the GIL while it decodes): each
decoder stays one-threaded, and a 480x640 AV1 decoder holds 2.5 MB instead of the 6.0 MB of a
two-threaded one (240x320: 1.2 instead of 2.5; ``tools/bench_frame_costs.py``). The pool holds one
per episode and camera, so this is what threading costs in memory. ``dataset.py`` says how the
samples are shared out over the threads, and how far ahead of the sample handed out they decode.
"""

from __future__ import annotations

import logging
import os
from typing import Collection, Mapping, Sequence

import cv2
import numpy as np
import torch

from ..errors import UsageError
from .depth import DepthClipDecoder
from .episodes import LoadedEpisode, EpisodeError
from .shared_decoder import PlanarFrame, SharedClipDecoder, SharedPathEnded, open_shared
from .torchcodec_import import video_decoder_class

log = logging.getLogger(__name__)

#: Samples of different episodes decoded at once in the training process (``num_workers=0``), one
#: thread each (see the module docstring); 2, not every core: a DataLoader worker is the way to
#: more cores, and every stream's decoded frames wait in memory for their turn.
MAIN_DECODE_STREAMS = min(2, os.cpu_count() or 1)


#: Cameras this process has warned about: torchcodec decoded them on the CPU though asked for a GPU.
_WARNED_FALLBACK: set[str] = set()


def warn_if_decoded_on_cpu(camera: str, device: str, status: object) -> bool:
    """Whether torchcodec, asked to decode ``camera`` on ``device``, decodes it on the CPU instead
    (``status``: its decoder's ``cpu_fallback``; true when it fell back, e.g. on a GPU whose NVDEC
    does not take the codec); warns once per camera and process when it does.

    Measured on an NVIDIA H200 (README, "GPU decode"): its NVDEC does not take lerobot's default
    AV1, and the reader at ``num_workers=0`` then gave 0.59x the samples/s of
    ``video_decode_device="cpu"``."""
    if not status:
        return False
    if camera not in _WARNED_FALLBACK:
        _WARNED_FALLBACK.add(camera)
        log.warning(
            "video_decode_device=%r: torchcodec decodes camera %r on the CPU (%s), slower than "
            "video_decode_device='cpu'. Repack with `lerobot-wds pack --codec h264` for the GPU's decoder, "
            "or decode on the CPU.", device, camera, status,
        )
    return True


def _opens_on_cpu(clip: object) -> bool:
    """Whether torchcodec opens ``clip`` on the CPU (a clip that does not open on a GPU: the GPU's
    fault, or the clip's?)."""
    try:
        video_decoder_class()(clip, seek_mode="exact", num_ffmpeg_threads=1)
    except (RuntimeError, ValueError):
        return False
    return True


_FORK_HOOKED = False


def import_decoders_before_fork() -> None:
    """Have PyAV, which decodes lerobot's clips (``shared_decoder.py``), imported in this process
    right before it forks, rather than now.

    Forked DataLoader workers inherit what the parent imported, so the parent imports it once,
    just before the first fork, instead of every worker paying the time before its first batch.
    Spawned and forkserver workers import it themselves, so with them the training process, which
    then decodes nothing, never imports it. torchcodec is imported where a clip first needs it
    (one the shared path does not take, or a GPU): it costs 0.1-0.5 s and ~40 MB resident in a
    process here, 2.3 s and ~110 MB more where ``torch._dynamo`` comes with it
    (``torchcodec_import.py``).
    """
    global _FORK_HOOKED
    if not _FORK_HOOKED and hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_import_decoders)
        _FORK_HOOKED = True


def _import_decoders() -> None:
    import av  # noqa: F401


def planar(frame: torch.Tensor) -> torch.Tensor:
    """A ``(C, H, W)`` frame in contiguous storage of its own, the same values (torchcodec's frames
    are views of interleaved ``(H, W, C)`` memory; see the module docstring for why)."""
    if frame.is_contiguous() or frame.device.type != "cpu":
        return frame.contiguous()
    out = torch.empty(frame.shape, dtype=frame.dtype)
    write_frame(frame, out)
    return out


def write_frame(frame: torch.Tensor | PlanarFrame, out: torch.Tensor) -> None:
    """Copy a uint8 ``(C, H, W)`` CPU frame, or the shared decoder's planar frame, into ``out``
    (contiguous, uint8 or float32); the planar frame is converted by swscale straight into uint8
    memory where it can be (``PlanarFrame.convert_into``), an interleaved frame is deinterleaved by
    ``cv2.split`` on the way, and float32 gets :func:`to_float`'s values, bit for bit."""
    planar_frame = isinstance(frame, PlanarFrame)
    if planar_frame and frame.convert_into(out):
        return
    if planar_frame or out.dtype == torch.float32:  # plane by plane
        for dst, src in zip(out.numpy(), frame.channels() if planar_frame else frame.numpy()):
            if out.dtype == torch.float32:
                np.divide(src, np.float32(255.0), out=dst, dtype=np.float32)
            else:
                np.copyto(dst, src)
        return
    src = frame.numpy()
    hwc = frame.permute(1, 2, 0).numpy()
    if frame.is_contiguous() or not hwc.flags.c_contiguous or hwc.shape[2] > 4:  # not torchcodec's layout
        np.copyto(out.numpy(), src)
        return
    planes = list(out.numpy())
    written = cv2.split(hwc, planes)
    if not all(w is p or np.shares_memory(w, p) for w, p in zip(written, planes)):
        raise RuntimeError("cv2.split did not write into the planes it was given; report this with "
                           f"cv2 {cv2.__version__} and numpy {np.__version__}")


def _ints(idx: Sequence[int]) -> list[int]:
    """Frame indices as a list of Python ints: the sample builder's lists as they are (never
    changed here), anything else (numpy arrays, tensors) converted."""
    return idx if isinstance(idx, list) else [int(i) for i in idx]


def to_float(frames_u8: torch.Tensor) -> torch.Tensor:
    """uint8 frames → float32 in [0, 1], computed as LeRobot does (``(u8 / 255.0).to(float32)``)."""
    return (frames_u8 / 255.0).to(torch.float32)


class EpisodeVideo:
    """Frames of one in-memory episode's cameras, by episode-local frame index.

    ``reach[camera] = (back, fwd)``: how many frames before/after the emitted frame its window
    reads (0, 0 without a window); ``planar``: frames in contiguous storage (see the module
    docstring); ``sizes[camera] = (width, height)``: what the dataset says its frames are (a clip
    that decodes at another size, or at another than its episode metadata says, is an error);
    ``depth``: depth-map cameras, whose frames are their 12-bit codes, uint16 ``(N, 1, H, W)``,
    decoded on the CPU by PyAV as lerobot does (``depth.py``).
    Frames may be asked for in any order (a jump back seeks), but each frame is decoded once and
    memory stays at the window reach only when the emitted frames (``at``) go forward one by one,
    as the pool draws them. Not for use by two threads at once; one at a time is fine.
    """

    def __init__(
        self, episode: LoadedEpisode, device: str = "cpu", reach: Mapping[str, tuple[int, int]] | None = None,
        planar: bool = False, sizes: Mapping[str, tuple[int, int]] | None = None, depth: Collection[str] = (),
    ) -> None:
        self.episode = episode
        self.depth = frozenset(depth)
        self.sizes = dict(sizes or {})
        self.planar = planar
        self.device = device
        self.reach = dict(reach or {})
        self._decoders: dict[str, object] = {}
        self._frames: dict[str, dict[int, torch.Tensor]] = {}
        self._fallback_checked: set[str] = set()  # cameras whose decoder was asked whether it fell back
        self.decoded = 0  # frames the decoders gave (decode work; 1 per frame when nothing repeats)

    def _decoder(self, camera: str):
        dec = self._decoders.get(camera)
        if dec is None:
            info = self.episode.meta.clips[camera]
            clip = self.episode.clips[camera]
            try:
                if camera in self.depth:
                    dec = DepthClipDecoder(clip)
                else:
                    dec = open_shared(clip) if self.device == "cpu" else None
                    if dec is None:
                        dec = self._held_decoder(camera)
            except (RuntimeError, ValueError, IndexError) as e:
                # Opens on the CPU: the device is at fault, not the episode (depth maps: always the CPU).
                if self.device != "cpu" and camera not in self.depth and _opens_on_cpu(clip):
                    raise UsageError(
                        f"video_decode_device={self.device!r}: torchcodec cannot decode there ({e}), though it "
                        f"decodes camera {camera!r} of {self.episode.where} on the CPU. Use a CUDA build of "
                        "torchcodec (PyPI's from 0.14, or PyTorch's index: pip install torchcodec --index-url "
                        "https://download.pytorch.org/whl/cu130) where torch sees an NVIDIA GPU, or leave "
                        "video_decode_device at 'cpu'"
                    ) from e
                raise EpisodeError(f"{self.episode.where}: clip of camera {camera!r} does not open ({e})") from e
            meta = dec if camera in self.depth or isinstance(dec, SharedClipDecoder) else dec.metadata
            wrong = info.size_mismatch((meta.width, meta.height), self.sizes.get(camera))
            if wrong:
                raise EpisodeError(f"{self.episode.where}: clip of camera {camera!r} {wrong}; repack this episode")
            n = meta.num_frames
            if n is not None and n < info.lead_in + self.episode.length:
                raise EpisodeError(
                    f"{self.episode.where}: clip of camera {camera!r} has {n} frames, needs "
                    f"lead_in {info.lead_in} + length {self.episode.length}; repack this episode"
                )
            self._decoders[camera] = dec
        return dec

    def _held_decoder(self, camera: str):
        return video_decoder_class()(self.episode.clips[camera], device=self.device, seek_mode="exact",
                                     num_ffmpeg_threads=1)

    def _frame(self, camera: str, i: int) -> torch.Tensor | PlanarFrame:
        dec = self._decoders[camera]
        if camera in self.depth:
            return dec.codes_at(i)
        if isinstance(dec, SharedClipDecoder):
            try:
                return dec.frame_at(i)
            except SharedPathEnded as e:  # its torchcodec decoder takes over, from this frame on
                log.debug("%s: camera %r decoded by torchcodec from frame %d on: %s", self.episode.where, camera, i, e)
                dec = self._decoders[camera] = self._held_decoder(camera)
        return dec.get_frame_at(i).data

    def frames(self, camera: str, idx: Sequence[int], at: int | None = None) -> torch.Tensor:
        """uint8 ``(len(idx), C, H, W)`` frames at episode-local indices ``idx`` (any order, repeats
        ok), in storage no other sample shares; ``at``: the frame being emitted (lets older frames go)."""
        got = self._gather(camera, idx, at)
        if any(isinstance(f, PlanarFrame) for f in got):
            out = torch.empty((len(got), *got[0].shape), dtype=torch.uint8)
            for j, frame in enumerate(got):
                write_frame(frame, out[j])
            return out
        if len(got) == 1 and self._frames[camera].get(int(idx[0])) is not got[0]:
            return got[0].unsqueeze(0)  # a decoded frame no one else holds: no copy
        if got[0].device.type != "cpu":
            return torch.stack(got)
        return torch.from_numpy(np.stack([t.numpy() for t in got]))

    def frames_float(self, camera: str, idx: Sequence[int], at: int | None = None) -> torch.Tensor:
        """float32 ``(len(idx), C, H, W)`` in [0, 1], equal bit for bit to ``to_float(frames(...))``,
        written straight into the output (no uint8 stack in between: one pass over the pixels)."""
        got = self._gather(camera, idx, at)
        if isinstance(got[0], torch.Tensor) and got[0].device.type != "cpu":
            return to_float(torch.stack(got))
        out = torch.empty((len(got), *got[0].shape), dtype=torch.float32)
        for j, frame in enumerate(got):
            write_frame(frame, out[j])
        return out

    def frames_into(self, camera: str, idx: Sequence[int], at: int | None, rows: Sequence[torch.Tensor]) -> None:
        """Write the frames at ``idx`` into ``rows`` (one contiguous ``(C, H, W)`` tensor each; uint8,
        or float32 for :func:`to_float`'s values): what :meth:`frames` or :meth:`frames_float` return,
        in memory the caller gives (a batch's rows: ``batch.py``). CPU decoding only."""
        for frame, row in zip(self._gather(camera, idx, at), rows, strict=True):
            write_frame(frame, row)

    def decode(self, camera: str, idx: Sequence[int]) -> None:
        """Decode the frames at ``idx`` that are not decoded yet and keep them for the next
        :meth:`frames` call (which hands them out and lets go of those its window no longer needs)."""
        self._decode_missing(camera, _ints(idx))

    def _gather(self, camera: str, idx: Sequence[int], at: int | None) -> list[torch.Tensor]:
        wanted = _ints(idx)
        have = self._decode_missing(camera, wanted)
        got = [have[i] for i in wanted]
        if at is not None:  # keep what the next frame's window can use: [at + 1 - back, at + fwd]
            back, fwd = self.reach.get(camera, (0, 0))
            for i in [i for i in have if i <= at - back or i > at + fwd]:
                del have[i]
        return got

    def _decode_missing(self, camera: str, wanted: list[int]) -> dict[int, torch.Tensor]:
        have = self._frames.setdefault(camera, {})
        missing = [i for i in wanted if i not in have]
        if missing:
            dec = self._decoder(camera)  # opened here; _frame may swap it (its torchcodec decoder)
            info = self.episode.meta.clips[camera]
            first, last = min(missing), max(missing)
            for i in range(first, last + 1):  # forward, one by one: the decoder never seeks back
                if i in have:
                    continue
                try:
                    frame = self._frame(camera, i + info.lead_in)
                except (RuntimeError, ValueError, IndexError) as e:
                    raise EpisodeError(
                        f"{self.episode.where}: decoding frames {first}..{last} of camera {camera!r} failed ({e})"
                    ) from e
                if tuple(frame.shape[-2:]) != (info.height, info.width):  # a clip may change size midway
                    raise EpisodeError(
                        f"{self.episode.where}: frame {i} of camera {camera!r} decodes at {frame.shape[-1]}x"
                        f"{frame.shape[-2]}, its header and metadata say {info.width}x{info.height}; repack this episode"
                    )
                have[i] = planar(frame) if self.planar and isinstance(frame, torch.Tensor) else frame
                self.decoded += 1
            # torchcodec knows whether it fell back to the CPU once a frame is decoded
            if self.device != "cpu" and camera not in self.depth and camera not in self._fallback_checked:
                self._fallback_checked.add(camera)
                warn_if_decoded_on_cpu(camera, self.device, getattr(dec, "cpu_fallback", None))
        return have

    def close(self) -> None:
        """Release decoders and decoded frames (the episode left the pool)."""
        self._decoders.clear()
        self._frames.clear()
