"""Decoding lerobot's AV1 clips through one codec context shared by every episode.

A held torchcodec decoder per pool episode and camera (``video.py``) is most of what a pool
episode holds: 2.5 MB at 480x640 and 1.2 MB at 240x320 with one FFmpeg thread, against a clip of
about 1.4 MB for both cameras. lerobot writes AV1 with a keyframe every second frame (GOP 2: the
frame after a keyframe refers only to it) and a sequence header at the start of every keyframe,
so a keyframe resets everything a decoder holds: one PyAV codec context per camera and thread,
fed each episode's packets in the pool's order, decodes a keyframe and the frame after it in one
turn, and nothing of one episode's turn reaches another's. The episode keeps the second frame as
decoded (4:2:0, half the bytes of RGB, in the decoder's own picture pool) for its next draw, and
converts it to RGB then. An episode holds its packets' places in its clip and at most one decoded
frame per camera instead of a decoder: 0.59-0.62 MB against 2.49-2.70 at 480x640 and 0.19
against 1.16 at 240x320, at 1.19-1.23 against 1.30-1.33 ms a frame at 480x640 and 0.43 against
0.44 at 240x320 (both environments; ``tools/bench_frame_costs.py``). Converting at the draw rather
than at decode also keeps RGB frames out of the heap between draws: a process building batches
with windows over 200 episodes on one thread, as a DataLoader worker does, held 923 MB instead of
997, its heap 119 MB free instead of 191 (``tools/bench_pool_memory.py``). The frames a window
reaches are held as decoded too, and converted at each use (:class:`PlanarFrame`).

The frames must equal torchcodec's, LeRobotDataset's decoder, pixel for pixel. :func:`open_shared`
says None (the caller holds a torchcodec decoder instead) unless everything that makes them equal
holds: AV1, every keyframe starting with a sequence header (other codecs keep state, such as
h264's parameter sets, that a keyframe need not reset); 8-bit 4:2:0 (``yuv420p``, or
``yuvj420p``); untagged or BT.601 colour (lerobot's writer tags none), under which PyAV's RGB
conversion equals torchcodec's in both supported stacks, where under BT.709 PyAV 15.1 differs by
up to 39 (``tools/check_pyav_colour.py``, and the tests); decode order is presentation order;
every frame a keyframe or right after one; each packet's bytes where the clip's sample table (or
the demuxer) says. A turn that gives back other than one frame per packet, or a frame of another
format, colour tag or size, ends the shared path for that episode and camera (its torchcodec
decoder takes over at the same frame, and the context is dropped) rather than yield a frame that
might differ.
"""

from __future__ import annotations

import ctypes
import functools
import io
import logging
import threading
from typing import Callable, TypeVar

import numpy as np
import torch

from ..packer.sampletable import read_sample_table

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Colour matrices (FFmpeg's AVColorSpace numbers) under which PyAV's ``rgb24`` equals torchcodec's:
#: unspecified (2), BT.470BG (5) and SMPTE 170M (6), the BT.601 family, in every colour range.
SAME_COLOUR = frozenset({2, 5, 6})

#: AV1's OBU type of a sequence header: a keyframe's first OBU in lerobot's clips.
OBU_SEQUENCE_HEADER = 1

#: Pixel formats taken: 8-bit 4:2:0, limited range or full (which FFmpeg may call yuvj420p).
SAME_FORMAT = frozenset({"yuv420p", "yuvj420p"})

#: Codec contexts a thread keeps, the most recently used: one per (codec, extradata, size), so one
#: per camera for lerobot's clips; clips that differ in more go through contexts made anew.
CONTEXTS_PER_THREAD = 8

#: Each thread's codec contexts, never used by two threads.
_contexts = threading.local()


class SharedPathEnded(Exception):
    """The shared path cannot give this frame exactly; the caller decodes it with torchcodec."""


def _context(codec: str, extradata: bytes | None, size: tuple[int, int]):
    import av  # here, not at the top: a process that decodes nothing never imports PyAV

    def create():
        ctx = av.CodecContext.create(codec, "r")
        if extradata:
            ctx.extradata = extradata
        ctx.thread_count = 1  # one FFmpeg thread per decoder, as torchcodec's (video.py)
        return ctx

    by_key = getattr(_contexts, "by_key", None)
    if by_key is None:
        by_key = _contexts.by_key = {}
    # An evicted context needs nothing more: frames kept from it hold their own references.
    return _most_recent(by_key, (codec, extradata, size), create)


def _most_recent(cache: dict, key, make: Callable[[], T], evict: Callable[[T], object] = lambda _: None) -> T:
    """``cache[key]``, made by ``make`` where missing, put back last; a thread's caches keep at most
    :data:`CONTEXTS_PER_THREAD`, the most recently used, and ``evict`` is given each one let go."""
    value = cache.pop(key, None)
    if value is None:
        while len(cache) >= CONTEXTS_PER_THREAD:
            evict(cache.pop(next(iter(cache))))
        value = make()
    cache[key] = value
    return value


def _drop_context(key: tuple) -> None:
    getattr(_contexts, "by_key", {}).pop(key, None)


class SharedClipDecoder:
    """Frames of one clip by index in presentation order, decoded through a context this thread
    shares with every other clip of the same codec, extradata and size. ``frame_at(i)`` gives
    frame ``i`` with torchcodec's values, as a :class:`PlanarFrame`."""

    def __init__(self, clip: bytes, codec: str, extradata: bytes | None, width: int, height: int,
                 places: np.ndarray, key: np.ndarray) -> None:
        self._clip = memoryview(clip)
        self._ctx_key = (codec, extradata, (width, height))
        self.width, self.height = width, height
        self.num_frames = len(places)
        # Python lists, not arrays: read for every packet, where numpy's indexing and int() cost more
        self._places: list[list[int]] = places.tolist()  # each packet's byte offset and size in the clip
        self._key: list[bool] = key.tolist()
        self._kept: tuple[int, object] | None = None  # the frame after the last one given, as decoded

    def frame_at(self, i: int) -> PlanarFrame:
        """Frame ``i``; raises :class:`SharedPathEnded` when it cannot be given exactly, ValueError
        for a clip that does not decode (as torchcodec does)."""
        if not 0 <= i < self.num_frames:
            raise IndexError(f"frame {i} is not in the clip's {self.num_frames} frames")
        kept, self._kept = self._kept, None
        if kept is not None and kept[0] == i:
            return PlanarFrame(kept[1])
        start = i if self._key[i] else i - 1  # a frame that is no keyframe follows one (open_shared)
        turn = [start] if start + 1 >= self.num_frames or self._key[start + 1] else [start, start + 1]
        frames = self._turn(turn)
        if i == start and len(frames) == 2:
            self._kept = (i + 1, frames[1])
        return PlanarFrame(frames[i - start])

    def _turn(self, numbers: list[int]) -> list:
        import av

        ctx = _context(*self._ctx_key)
        out = []
        try:
            for n in numbers:
                offset, size = self._places[n]
                out.extend(ctx.decode(av.Packet(self._clip[offset:offset + size])))
        except av.FFmpegError as e:
            _drop_context(self._ctx_key)  # whatever it holds now is no other clip's business
            raise ValueError(f"frame {numbers[-1]} does not decode ({e})") from e
        if len(out) != len(numbers):
            _drop_context(self._ctx_key)  # frames held back for later: not a context to share
            raise SharedPathEnded(f"{len(numbers)} packets gave {len(out)} frames")
        for f in out:
            if f.format.name not in SAME_FORMAT or f.colorspace not in SAME_COLOUR \
                    or (f.width, f.height) != (self.width, self.height):
                _drop_context(self._ctx_key)  # it decoded what the path refuses: start the next clip afresh
                raise SharedPathEnded(f"a frame is {f.format.name}, colour matrix {f.colorspace}, {f.width}x{f.height}")
        return out


@functools.cache
def _pyav_17() -> bool:
    """Whether PyAV is 17 or later, whose ``reformat`` goes through ``sws_scale_frame``: it takes
    ``threads`` and reads a frame's colour range tag."""
    import av

    return int(av.__version__.split(".")[0]) >= 17


def one_thread_options() -> dict:
    """The keywords that make PyAV's ``reformat`` convert on one thread, as everything here
    decodes (``video.py``): PyAV from 17 converts on a thread per core unless told otherwise;
    earlier versions convert on one and take no ``threads`` (15.1 and 16.1 refuse it)."""
    return {"threads": 1} if _pyav_17() else {}


def _reformat(format: str):
    """This thread's conversion to ``format`` (``gbrp`` or ``rgb24``), through one PyAV reformatter
    per format (its swscale context, made once and reused while the frames' size and format stay).
    ``VideoFrame.reformat`` makes one for every frame and keeps it with the frame, so every frame
    held for a window kept a context of its own, and a frame's first conversion cost more: at
    480x640 0.119-0.121 ms against 0.076-0.077 with PyAV 15.1 and 0.079 against 0.063 with 18.1,
    at 240x320 0.043 against 0.034 and 0.044 against 0.021 (``tools/bench_frame_costs.py
    --conversions``). End to end within this machine's noise: A/B rounds of
    ``tools/bench_peers.py --child`` rows at 480x640, single samples at 2 workers without windows
    670 against 675 samples/s (medians of five), batches with windows at 0 and 2 workers +1 to +5 %
    and +0 to +17 % (two rounds), single samples with windows at 2 workers -2 and -3 %."""
    by_format = getattr(_contexts, "reformat", None)
    if by_format is None:
        by_format = _contexts.reformat = {}
    convert = by_format.get(format)
    if convert is None:
        from av.video.reformatter import VideoReformatter

        convert = by_format[format] = functools.partial(VideoReformatter().reformat, format=format,
                                                        **one_thread_options())
    return convert


#: swscale converts 4:2:0 to planar ``gbrp`` exactly only where a frame's width is a multiple of
#: this: at 424, 200 and 130 (in both supported stacks) it got the pixels after the last multiple
#: of 16 wrong, by up to 222, where its ``rgb24`` (torchcodec's conversion) is exact, and every
#: multiple of 16 tried came out exact (``tests/test_shared_decoder.py``); 64 leaves room for wider
#: vector code than this machine's. Other widths are converted to ``rgb24`` and taken apart.
GBRP_WIDTHS = 64


#: swscale's ``SWS_BILINEAR``: PyAV's ``reformat`` default, and torchcodec's (the chroma upsampling).
SWS_BILINEAR = 2

#: FFmpeg's ``AVCOL_RANGE_JPEG``: a frame tagged full range.
AVCOL_RANGE_JPEG = 2

_P4 = ctypes.c_void_p * 4
_I4 = ctypes.c_int * 4


class _Swscale:
    """libswscale as PyAV links it, called through ctypes to convert a decoded frame to ``gbrp``
    straight into memory the caller gives (a batch's row, a sample's tensor), with no PyAV frame in
    between to be copied from.

    Its functions are looked up through PyAV's reformatter module, which finds them in the
    libraries that module links (``dlsym`` on a library searches it and its dependencies), so it
    is the same libswscale and libavutil PyAV converts with, not another FFmpeg loaded in the
    process (torchcodec's). It converts as ``VideoReformatter.reformat`` does by default for the
    frames it is given (:func:`_write_gbrp`: 8-bit 4:2:0 tagged BT.601 or untagged, swscale's
    default matrix): the range as that PyAV reads it (``tagged_range``), ``SWS_BILINEAR``, one
    thread; the pixels equal torchcodec's wherever :func:`open_shared` takes a clip (the tests,
    and ``tools/check_pyav_colour.py``, compare them). Only at widths that are multiples of
    :data:`GBRP_WIDTHS`, where ``gbrp`` is exact at all, into memory aligned as much: there every
    line comes out whole and nothing outside the memory given is written (the tests surround it
    with sentinels).

    What it saves, against PyAV's converted frame copied in plane by plane, the same 300 frames
    converted again and again into one row (``tools/bench_frame_costs.py --conversions``, which
    also finds every frame of the peers benchmark's clips equal to ``rgb24``'s): 0.071-0.072 ms
    against 0.093-0.106 at 480x640, 0.027-0.029 against 0.034-0.047 at 240x320 (PyAV 18.1 and
    15.1); more end to end, where the copy read and wrote memory no cache held (``video.py``)."""

    def __init__(self) -> None:
        import av.video.reformatter

        lib = ctypes.CDLL(av.video.reformatter.__file__)  # loaded already: the same handle
        self._get_context = lib.sws_getContext
        self._get_context.restype = ctypes.c_void_p
        self._get_context.argtypes = [ctypes.c_int] * 7 + [ctypes.c_void_p] * 3
        self._free_context = lib.sws_freeContext
        self._free_context.argtypes = [ctypes.c_void_p]
        self._scale = lib.sws_scale
        self._scale.restype = ctypes.c_int
        self._scale.argtypes = [ctypes.c_void_p, _P4, _I4, ctypes.c_int, ctypes.c_int, _P4, _I4]
        int_p, table_p = ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.POINTER(ctypes.c_int))
        self._get_details = lib.sws_getColorspaceDetails
        self._get_details.restype = ctypes.c_int
        self._get_details.argtypes = [ctypes.c_void_p, table_p, int_p, table_p, int_p, int_p, int_p, int_p]
        self._set_details = lib.sws_setColorspaceDetails
        self._set_details.restype = ctypes.c_int
        self._set_details.argtypes = [ctypes.c_void_p, int_p, ctypes.c_int, int_p] + [ctypes.c_int] * 4
        pix_fmt = lib.av_get_pix_fmt
        pix_fmt.restype = ctypes.c_int
        pix_fmt.argtypes = [ctypes.c_char_p]
        self._formats = {name: pix_fmt(name.encode()) for name in (*SAME_FORMAT, "gbrp")}
        #: Whether PyAV's ``reformat`` converts with the range a frame is tagged with: from PyAV 17
        #: (``sws_scale_frame``, which reads it); before, as swscale's default for the pixel format
        #: (full for ``yuvj420p``, limited for ``yuv420p`` whatever its tag). Each is what the
        #: torchcodec of its stack does (lerobot 0.6.1's: PyAV 15.1, torchcodec 0.11; and PyAV 18.1,
        #: torchcodec 0.17: ``tests/test_shared_decoder.py`` ``test_colour_tags``, full range included).
        self.tagged_range = _pyav_17()

    def context(self, width: int, height: int, src_format: str, full_range: bool) -> int:
        """An swscale context from ``src_format`` to ``gbrp`` at this size, reading the source as
        full range where ``full_range`` (the caller frees it)."""
        ptr = self._get_context(width, height, self._formats[src_format], width, height, self._formats["gbrp"],
                                SWS_BILINEAR, None, None, None)
        if not ptr:
            raise RuntimeError(f"swscale has no conversion from {src_format} to gbrp at {width}x{height}")
        inv_table, table = ctypes.POINTER(ctypes.c_int)(), ctypes.POINTER(ctypes.c_int)()
        src_range, dst_range, brightness, contrast, saturation = (ctypes.c_int() for _ in range(5))
        if self._get_details(ptr, ctypes.byref(inv_table), ctypes.byref(src_range), ctypes.byref(table),
                             ctypes.byref(dst_range), ctypes.byref(brightness), ctypes.byref(contrast),
                             ctypes.byref(saturation)) < 0:
            self.free(ptr)
            raise RuntimeError(f"swscale does not say how it converts {src_format} to gbrp")
        if src_range.value != full_range and self._set_details(
                ptr, inv_table, int(full_range), table, dst_range.value, brightness.value, contrast.value,
                saturation.value) < 0:
            self.free(ptr)
            raise RuntimeError(f"swscale cannot read {src_format} as {'full' if full_range else 'limited'} range")
        return ptr

    def free(self, ptr: int) -> None:
        self._free_context(ptr)

    def convert(self, ptr: int, frame, out: torch.Tensor) -> None:
        """Convert ``frame`` into ``out``, a contiguous uint8 ``(3, H, W)`` CPU tensor (R, G, B planes)."""
        height, width = frame.height, frame.width
        y, u, v = frame.planes
        base, size = out.data_ptr(), height * width
        done = self._scale(ptr, _P4(y.buffer_ptr, u.buffer_ptr, v.buffer_ptr, None),
                           _I4(y.line_size, u.line_size, v.line_size, 0),
                           0, height, _P4(base + size, base + 2 * size, base, None), _I4(width, width, width, 0))
        if done != height:
            raise RuntimeError(f"swscale wrote {done} of {height} lines")


@functools.cache
def _swscale() -> _Swscale | None:
    """The process's :class:`_Swscale`, or None where PyAV's libswscale cannot be called (a PyAV
    linked statically): frames then go through :func:`_reformat` and a copy."""
    try:
        return _Swscale()
    except (OSError, AttributeError) as e:
        log.debug("converting through PyAV frames: libswscale not callable (%s)", e)
        return None


class _ThreadContexts:
    """This thread's swscale contexts by (width, height, pixel format, full range), at most
    :data:`CONTEXTS_PER_THREAD`, the most recently used; freed with the thread."""

    def __init__(self, lib: _Swscale) -> None:
        self.lib = lib
        self.by_key: dict[tuple[int, int, str, bool], int] = {}

    def get(self, frame) -> int:
        name = frame.format.name
        full_range = name == "yuvj420p" or (self.lib.tagged_range and frame.color_range == AVCOL_RANGE_JPEG)
        key = (frame.width, frame.height, name, full_range)
        return _most_recent(self.by_key, key, lambda: self.lib.context(*key), self.lib.free)

    def __del__(self) -> None:
        for ptr in self.by_key.values():
            self.lib.free(ptr)


def _write_gbrp(frame, out: torch.Tensor) -> bool:
    """Convert ``frame`` straight into ``out`` (contiguous uint8 ``(3, H, W)``, CPU); False where
    that is not possible here (the caller copies from a frame PyAV converted instead): also for a
    frame outside what :func:`open_shared` takes (format, BT.601 colour), whose conversion
    :class:`_Swscale` does not set up as PyAV does."""
    lib = _swscale()
    if lib is None or frame.format.name not in SAME_FORMAT or frame.colorspace not in SAME_COLOUR \
            or frame.width % GBRP_WIDTHS or out.dtype != torch.uint8 or out.device.type != "cpu" \
            or not out.is_contiguous() or tuple(out.shape) != (3, frame.height, frame.width) \
            or out.data_ptr() % GBRP_WIDTHS:
        return False
    contexts = getattr(_contexts, "sws", None)
    if contexts is None:
        contexts = _contexts.sws = _ThreadContexts(lib)
    lib.convert(contexts.get(frame), frame, out)
    return True


#: The plane of swscale's planar ``gbrp`` (G, B, R) that holds each RGB channel.
_GBRP_PLANE_OF_RGB_CHANNEL = (2, 0, 1)


class PlanarFrame:
    """A decoded frame, held as decoded (4:2:0, in the decoder's picture pool) and converted to
    RGB at each use: swscale's planar ``gbrp``, whose planes are written in RGB order into the
    memory the use gives (a batch's row, a sample's tensor: ``video.write_frame``), so every copy
    of it is a plain copy; at widths where swscale's ``gbrp`` is not exact (:data:`GBRP_WIDTHS`),
    ``rgb24`` taken apart instead. Its values are torchcodec's ``(3, H, W)`` frame's.

    Why ``gbrp`` rather than torchcodec's layout, interleaved ``rgb24`` deinterleaved by
    ``cv2.split``: the same pixels (every frame of the peers benchmark's clips in both supported
    PyAV versions: ``tools/bench_frame_costs.py --conversions``; the colour tags the shared path
    takes: ``tools/check_pyav_colour.py``), a 480x640 frame converted and written into a row in
    0.094-0.124 ms instead of 0.140-0.154 (the same tool, seven of eight runs; in the eighth, on a
    busier moment, 0.186 against 0.172), and every later copy a plain one; end to end:
    ``video.py``.

    Why held as decoded and converted at each use rather than held converted: a frame a window
    reaches is held for the draws between its uses (``video.py``), and 4:2:0 is half the bytes of
    RGB. Over 200 episodes at 480x640 with ``bench_peers.py``'s windows (the top camera at
    ``[-0.1, 0.0]``), a process building batches on one thread held 88 MB of window frames
    instead of 176 and 748 MB in all instead of 905, its heap 9 MB free instead of 100 (no
    converted frames outliving the draws between them: ``tools/bench_pool_memory.py --one-thread
    --windows``); in ``tools/bench_peers.py --child`` rows with windows, peak RSS fell by
    0.31-0.42 GB at 2 workers and by 0.16-0.20 GB at 0. The cost is a second conversion of each
    frame a window uses again: batches with windows -8.5 % samples/s at 0 workers and -4.5 % at 2
    (medians of five interleaved A/B rounds), single samples within noise (+2 %, two rounds);
    without windows every frame is converted once, as before."""

    __slots__ = ("_frame", "shape")

    def __init__(self, frame) -> None:
        self._frame = frame  # as decoded: 4:2:0, converted at each use
        #: ``(3, H, W)``, as the tensor it stands for.
        self.shape = (3, frame.height, frame.width)

    @property
    def nbytes(self) -> int:
        """Bytes of the decoded frame it holds: its 4:2:0 planes, rows padded to their line size."""
        return sum(plane.buffer_size for plane in self._frame.planes)

    def channels(self) -> list[np.ndarray]:
        """The frame's R, G and B planes, uint8 ``(H, W)`` views of a conversion made now
        (``video.write_frame`` writes them where they go): of ``gbrp``, or of ``rgb24`` at widths
        where ``gbrp`` is not exact (:data:`GBRP_WIDTHS`)."""
        _, height, width = self.shape
        if width % GBRP_WIDTHS:
            rgb = _reformat("rgb24")(self._frame).planes[0]
            hwc = np.frombuffer(rgb, np.uint8).reshape(-1, rgb.line_size)[:height, :width * 3].reshape(height, width, 3)
            return [hwc[:, :, c] for c in range(3)]
        converted = _reformat("gbrp")(self._frame)
        planes = [np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:height, :width]
                  for plane in converted.planes]
        return [planes[i] for i in _GBRP_PLANE_OF_RGB_CHANNEL]

    def convert_into(self, out: torch.Tensor) -> bool:
        """Have swscale convert the frame straight into ``out``, with no copy after it
        (:class:`_Swscale`); False where it cannot (not contiguous uint8 CPU memory of the frame's
        shape, or a width where ``gbrp`` is not exact), and then ``video.write_frame`` copies
        :meth:`channels` in."""
        return _write_gbrp(self._frame, out)

    def tensor(self) -> torch.Tensor:
        """The frame as a contiguous uint8 ``(3, H, W)`` tensor of its own."""
        out = torch.empty(self.shape, dtype=torch.uint8)
        return out if self.convert_into(out) else torch.from_numpy(np.stack(self.channels()))


def open_shared(clip: bytes) -> SharedClipDecoder | None:
    """A :class:`SharedClipDecoder` for ``clip``, or None where its frames could differ from
    torchcodec's or where it is not GOP 2 or less (the module docstring says what is checked).
    Raises ValueError for a clip that does not demux.

    Each packet's place and keyframe flag come from the clip's sample table (the ``moov`` box's
    ``stsz``, ``stco``, ``stss``: ``packer/sampletable.py``, which refuses a table whose order or
    bytes it cannot vouch for, and then PyAV demuxes packet by packet). Opening a clip of the peers
    benchmark's top camera took 0.52-0.53 ms so, against 1.49-1.51 ms demuxed packet by packet, a
    Python object a packet (``tools/bench_frame_costs.py bench_out/peers/packed --camera
    observation.images.top``, two interleaved runs each way); an epoch opens every clip of the pool
    once, most of them in its first batches."""
    import av

    try:
        with av.open(io.BytesIO(clip)) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            ctx = stream.codec_context
            if ctx.codec.canonical_name != "av1" or ctx.format is None or ctx.format.name not in SAME_FORMAT \
                    or ctx.colorspace not in SAME_COLOUR:
                return None
            codec, extradata, width, height = ctx.name, ctx.extradata, ctx.width, ctx.height
            table = read_sample_table(io.BytesIO(clip)) if len(container.streams) == 1 else None
            if table is not None and table.size.all():
                places = np.stack([table.offset, table.size], axis=1)
                key, in_order = table.key, bool((np.diff(table.dts) > 0).all())
            else:  # FFmpeg's demuxer says where each packet is
                rows = [(p.pos, p.size, p.is_keyframe, p.pts) for p in container.demux(stream) if p.size]
                places = np.array([r[:2] for r in rows], dtype=np.int64)
                key = np.array([r[2] for r in rows], dtype=bool)
                pts = [r[3] for r in rows]
                in_order = all(p is not None for p in pts) and all(b > a for a, b in zip(pts, pts[1:]))
    except av.FFmpegError as e:
        raise ValueError(str(e)) from e
    if not len(places):
        return None
    if not in_order:
        return None  # presentation order is not decode order, or not known
    if (places[:, 0] < 0).any() or (places.sum(axis=1) > len(clip)).any():
        return None  # packets whose bytes are not where a slice of the clip finds them
    if not key[0] or not (key[1:] | key[:-1]).all():
        return None  # a frame two or more after its keyframe needs decoder state from earlier turns
    if any((clip[at] >> 3) & 0xF != OBU_SEQUENCE_HEADER for at in places[key, 0].tolist()):
        return None  # a keyframe that relies on a sequence header seen before: a turn must not
    return SharedClipDecoder(clip, codec, extradata, width, height, places, key)
