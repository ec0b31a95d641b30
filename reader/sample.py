"""One in-memory episode + a frame + delta windows → the dict ``LeRobotDataset[i]`` returns.

Same keys, dtypes and shapes as lerobot 0.6.1: every column of the frame table (scalar columns as
0-d tensors, vectors as ``(*shape)``, windowed keys as ``(len(deltas), *shape)`` with a
``<key>_is_pad`` bool mask; integers as int64 and floats as float32 whatever their declared dtype,
as lerobot makes them, ``episodes.py``), camera keys as float32 ``(C, H, W)`` (or
``(len(deltas), C, H, W)``) in [0, 1] (video cameras uint8 in [0, 255] with ``return_uint8``, as
lerobot's flag of that name, which leaves image-dtype cameras float32; ``image_transforms``
applied), depth-map cameras as float32 ``(1, H, W)`` in the unit asked for (``depth.py``; no
``image_transforms``, as lerobot), and ``task`` as the task string. Windows are exact slices of
the episode in memory;
padded positions hold the clamped edge frame's value, as in lerobot.
Tensors handed out own their storage (no views of a whole episode column), so sending a sample
between processes never drags the episode along; a sample built into a batch is never handed out,
and its numbers and rows become the batch's tensors there (``batch.py``).
"""

from __future__ import annotations

import io
from typing import Any, Callable, Mapping

import numpy as np
import torch

from .batch import Scalar
from .depth import dequantize
from .episodes import LoadedEpisode, EpisodeError
from .video import EpisodeVideo
from .window import window_indices


class SampleBuilder:
    """Builds samples for a fixed feature set and fixed delta windows (frame offsets)."""

    def __init__(
        self,
        video_keys: list[str],
        image_keys: list[str],
        task_strings: Mapping[int, str],
        deltas: Mapping[str, np.ndarray],
        image_transforms: Callable[[torch.Tensor], torch.Tensor] | None = None,
        return_uint8: bool = False,
        image_sizes: Mapping[str, tuple[int, int]] | None = None,
        depth_tables: Mapping[str, torch.Tensor] | None = None,
        image_depth: Mapping[str, bool | None] | None = None,
    ) -> None:
        self.video_keys = list(video_keys)
        #: Depth-map video cameras → the value of each code (``depth.py``).
        self.depth_tables = dict(depth_tables or {})
        #: Depth-map image cameras → True to turn their stored metres into millimetres (``* 1000.0``),
        #: False for the other way (``/ 1000.0``), None to leave them as stored, as lerobot does.
        self.image_depth = dict(image_depth or {})
        self.image_keys = set(image_keys)
        #: ``(width, height)`` each image-dtype feature declares; an image of another size is an error.
        self.image_sizes = dict(image_sizes or {})
        self.task_strings = dict(task_strings)
        self.deltas = dict(deltas)
        self.image_transforms = image_transforms
        self.return_uint8 = return_uint8

    def build(self, episode: LoadedEpisode, video: EpisodeVideo | None, frame: int,
              out: Mapping[str, torch.Tensor] | None = None) -> dict[str, Any]:
        """The sample at episode-local ``frame`` (0 ≤ frame < episode.length). ``out``, for a sample
        built into a batch (reader/batch.py): per camera, its row of the batch, which its frames are
        written into and which stands for them in the sample; its numbers are then
        :class:`~.batch.Scalar` and its other rows views of the episode's columns, which the batch's
        collate makes tensors of their own."""
        steps, tasks = self._prepared(episode)
        item: dict[str, Any] = {}
        batched = out is not None
        for key, kind, a, b, c, pad_key in steps:
            if kind == _SCALAR:
                item[key] = Scalar(a[frame], b) if batched else torch.scalar_tensor(a[frame], dtype=b)
            elif kind == _ROW:
                item[key] = a[frame] if batched else a[frame].clone()
            elif kind == _WINDOW:
                item[key] = a.index_select(0, b[frame])
            elif kind == _IMAGE:
                item[key] = self._image(a[frame], episode, key, frame)
            elif kind == _IMAGE_WINDOW:
                item[key] = torch.stack([self._image(a[int(i)], episode, key, int(i)) for i in b[frame]])
            elif kind == _VIDEO or kind == _VIDEO_WINDOW:
                if video is None:
                    raise EpisodeError(f"{episode.where}: no video decoder for camera {key!r}")
                idx = _camera_frames(kind, b, frame)
                if batched and key in out:
                    row = item[key] = out[key]
                    video.frames_into(key, idx, frame, (row,) if kind == _VIDEO else row.unbind(0))
                else:
                    if key in self.depth_tables:
                        got = dequantize(video.frames(key, idx, frame), self.depth_tables[key])
                    else:
                        got = (video.frames if self.return_uint8 else video.frames_float)(key, idx, frame)
                    item[key] = got[0] if kind == _VIDEO else got
            else:  # non-numeric column (e.g. strings): as stored
                item[key] = a[frame] if b is None else [a[int(i)] for i in b[frame]]
            if pad_key is not None:
                item[pad_key] = c[frame] if batched else c[frame].clone()
        if self.image_transforms is not None:
            for key in (*self.video_keys, *self.image_keys):
                if key in item and key not in self.depth_tables and key not in self.image_depth:
                    item[key] = self.image_transforms(item[key])
        for key, to_mm in self.image_depth.items():
            if key in item and to_mm is not None:
                item[key] = item[key] * 1000.0 if to_mm else item[key] / 1000.0
        item["task"] = tasks[frame]
        return item

    def video_frames(self, episode: LoadedEpisode, frame: int) -> list[tuple[str, list[int]]]:
        """Per camera, the episode-local frames :meth:`build` reads for the sample at ``frame``."""
        steps, _ = self._prepared(episode)
        return [(key, _camera_frames(kind, b, frame)) for key, kind, _a, b, _c, _p in steps
                if kind == _VIDEO or kind == _VIDEO_WINDOW]

    def video_reach(self) -> dict[str, tuple[int, int]]:
        """Per camera, how many frames before and after the sample's frame its window reads."""
        out = {}
        for key in self.video_keys:
            d = self.deltas.get(key)
            out[key] = (0, 0) if d is None or not len(d) else (max(0, -int(min(d))), max(0, int(max(d))))
        return out

    def _image(self, data: bytes, episode: LoadedEpisode, key: str, frame: int) -> torch.Tensor:
        return _decode_image(data, episode, key, frame, self.image_sizes.get(key))

    def _prepared(self, episode: LoadedEpisode) -> tuple[list[tuple[str, int, Any, Any, Any, str | None]], list[str]]:
        prepared = episode.cache.get("sample")
        if prepared is None:
            prepared = episode.cache["sample"] = self._prepare(episode)
        return prepared

    def _prepare(self, episode: LoadedEpisode) -> tuple[list[tuple[str, int, Any, Any, Any, str | None]], list[str]]:
        """Per-episode lookup tables, so a sample costs a few index operations: scalar columns as
        Python values, and for every windowed key the (length, window) tables of clamped frames
        and padding (exactly :func:`window_indices` at every frame)."""
        length = episode.length
        frames = np.arange(length)
        tables: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for key, d in self.deltas.items():
            idx, pad = window_indices(frames[:, None], length, d[None, :])  # (length, window)
            tables[key] = (torch.from_numpy(np.ascontiguousarray(idx)), torch.from_numpy(np.ascontiguousarray(pad)))
        out: list[tuple[str, int, Any, Any, Any, str | None]] = []
        for key, col in episode.columns.items():
            idx, pad = tables.get(key, (None, None))
            pad_key = None if idx is None else f"{key}_is_pad"
            if key in self.image_keys:
                out.append((key, _IMAGE if idx is None else _IMAGE_WINDOW, col, idx, pad, pad_key))
            elif isinstance(col, torch.Tensor):
                if idx is not None:
                    out.append((key, _WINDOW, col, idx, pad, pad_key))
                elif col.ndim == 1:
                    out.append((key, _SCALAR, col.tolist(), col.dtype, None, None))
                else:
                    out.append((key, _ROW, col, None, None, None))
            else:
                out.append((key, _OTHER, col, idx, None, None))
        for key in self.video_keys:  # each frame's window as a list of ints: what the decoders take
            idx, pad = tables.get(key, (None, None))
            pad_key = None if idx is None else f"{key}_is_pad"
            out.append((key, _VIDEO if idx is None else _VIDEO_WINDOW, None, None if idx is None else idx.tolist(),
                        pad, pad_key))
        # ``task``: the task string of each frame's task_index (the episode's first task without one).
        default = episode.meta.tasks[0] if episode.meta.tasks else ""
        ti = episode.columns.get("task_index")
        if isinstance(ti, torch.Tensor):
            tasks = [self.task_strings.get(t, default) for t in ti.tolist()]
        else:
            tasks = [default] * length
        return out, tasks


_SCALAR, _ROW, _WINDOW, _IMAGE, _IMAGE_WINDOW, _VIDEO, _VIDEO_WINDOW, _OTHER = range(8)


def _camera_frames(kind: int, windows: list[list[int]] | None, frame: int) -> list[int]:
    """Episode-local frames a camera step reads for the sample at ``frame``: the frame itself, or
    its window (the step's clamped window table row)."""
    return [frame] if kind == _VIDEO else windows[frame]


def _decode_image(data: bytes, episode: LoadedEpisode, key: str, frame: int,
                  size: tuple[int, int] | None = None) -> torch.Tensor:
    """Encoded image bytes (from the frame table) → the ``(C, H, W)`` tensor LeRobotDataset gives:
    decoded by PIL as the Hugging Face ``Image`` feature lerobot reads through decodes it (EXIF
    orientation applied), then as lerobot's ``pil_to_chw_tensor``: 8-bit images float32 in [0, 1]
    (``return_uint8`` is lerobot's flag for video frames only), 16-bit grayscale float32 of its
    values. ``size``: the ``(width, height)`` the feature declares. An image of another size is an
    error: one of another pixel count from its PNG, JPEG or TIFF header, before decoding (so an image
    claiming a huge size allocates nothing; the count, because an EXIF orientation may swap width
    and height), any other once decoded and oriented."""
    from PIL import Image, ImageOps

    header = image_header_size(data)
    if size is not None and header is not None and header[0] * header[1] != size[0] * size[1]:
        raise EpisodeError(f"{episode.where}: image {key!r} of frame {frame} is {header[0]}x{header[1]}, the "
                           f"dataset says {size[0]}x{size[1]}; the frame table is damaged or hostile, repack it")
    try:
        img = Image.open(io.BytesIO(bytes(data)))
        img.load()
        if img.getexif().get(Image.ExifTags.Base.Orientation) is not None:
            img = ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise EpisodeError(f"{episode.where}: image {key!r} of frame {frame} does not decode ({e})") from e
    if size is not None and img.size != size:
        raise EpisodeError(f"{episode.where}: image {key!r} of frame {frame} decodes at {img.size[0]}x{img.size[1]}, "
                           f"the dataset says {size[0]}x{size[1]}; repack it")
    return _chw_tensor(img)


def _chw_tensor(img: Any) -> torch.Tensor:
    """A PIL image as lerobot 0.6.1's ``pil_to_chw_tensor`` makes it (torchvision's ``ToTensor``
    for all but 16-bit grayscale, which becomes float32 ``(1, H, W)`` of its values)."""
    if img.mode in ("I;16", "I;16B", "I;16L"):
        return torch.from_numpy(np.array(img, dtype=np.float32))[None, ...]
    arr = np.array(img, {"I": np.int32, "F": np.float32}.get(img.mode, np.uint8), copy=True)
    if img.mode == "1":
        arr = 255 * arr
    t = torch.from_numpy(arr).view(img.size[1], img.size[0], len(img.getbands())).permute(2, 0, 1).contiguous()
    return t.to(torch.get_default_dtype()).div(255) if t.dtype == torch.uint8 else t


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # JPEG frame headers


def image_header_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG's IHDR, a JPEG's frame header or a TIFF's first directory
    (lerobot's depth images), without decoding; None for other formats or a header that cannot be
    read in the first 64 KB (the decoder then has its say)."""
    b = bytes(data[:65536])
    if b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR" and len(b) >= 24:
        return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")
    if b[:4] in (b"II*\0", b"MM\0*"):
        return _tiff_size(b, "little" if b[:2] == b"II" else "big")
    if b[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(b) and b[i] == 0xFF:
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in _SOF:
            return int.from_bytes(b[i + 7:i + 9], "big"), int.from_bytes(b[i + 5:i + 7], "big")
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
        else:
            i += 2 + int.from_bytes(b[i + 2:i + 4], "big")
    return None


def _tiff_size(b: bytes, order: str) -> tuple[int, int] | None:
    """ImageWidth and ImageLength (tags 256, 257; SHORT or LONG) of a TIFF's first directory."""
    def u(at: int, n: int) -> int:
        return int.from_bytes(b[at : at + n], order)

    ifd = u(4, 4)
    if ifd + 2 > len(b):
        return None
    found = {}
    for k in range(u(ifd, 2)):
        e = ifd + 2 + 12 * k
        if e + 12 > len(b):
            return None
        tag, kind = u(e, 2), u(e + 2, 2)
        if tag in (256, 257) and kind in (3, 4):
            found[tag] = u(e + 8, 2 if kind == 3 else 4)
    return (found[256], found[257]) if len(found) == 2 else None
