"""One in-memory episode + a frame + delta windows → the dict ``LeRobotDataset[i]`` returns.

Same keys, dtypes and shapes as lerobot 0.6.1: every column of the frame table (scalar columns as
0-d tensors, vectors as ``(*shape)``, windowed keys as ``(len(deltas), *shape)`` with a
``<key>_is_pad`` bool mask), camera keys as float32 ``(C, H, W)`` (or ``(len(deltas), C, H, W)``)
in [0, 1] (``image_transforms`` applied), and ``task`` as the task string. Windows are exact slices
of the episode in memory; padded positions hold the clamped edge frame's value, as in lerobot.
Tensors handed out own their storage (no views of a whole episode column), so sending a sample
between processes never drags the episode along.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import torch

from .episodes import Episode, EpisodeError
from .video import EpisodeVideo, to_float
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
    ) -> None:
        self.video_keys = list(video_keys)
        self.image_keys = set(image_keys)
        self.task_strings = dict(task_strings)
        self.deltas = dict(deltas)
        self.image_transforms = image_transforms
        self._deltas_t = {k: torch.from_numpy(v) for k, v in self.deltas.items()}

    def build(self, episode: Episode, video: EpisodeVideo | None, frame: int) -> dict[str, Any]:
        """The sample at episode-local ``frame`` (0 ≤ frame < episode.length)."""
        item: dict[str, Any] = {}
        pads: dict[str, torch.Tensor] = {}
        length = episode.length
        for key, col in episode.columns.items():
            d = self.deltas.get(key)
            if key in self.image_keys:
                if d is None:
                    item[key] = _decode_image(col[frame], episode, key, frame)
                else:
                    idx, pad = window_indices(frame, length, d)
                    item[key] = torch.stack([_decode_image(col[i], episode, key, int(i)) for i in idx])
                    pads[f"{key}_is_pad"] = torch.from_numpy(pad)
            elif isinstance(col, torch.Tensor):
                if d is None:
                    item[key] = col[frame].clone()
                else:
                    idx, pad = window_indices(frame, length, d)
                    item[key] = col[torch.from_numpy(idx)]
                    pads[f"{key}_is_pad"] = torch.from_numpy(pad)
            else:  # non-numeric column (e.g. strings): as stored
                item[key] = col[frame] if d is None else [col[int(i)] for i in window_indices(frame, length, d)[0]]
        item.update(pads)
        for key in self.video_keys:
            if video is None:
                raise EpisodeError(f"{episode.where}: no video decoder for camera {key!r}")
            d = self.deltas.get(key)
            if d is None:
                item[key] = to_float(video.frames(key, np.array([frame]))[0])
            else:
                idx, pad = window_indices(frame, length, d)
                item[key] = to_float(video.frames(key, idx))
                item[f"{key}_is_pad"] = torch.from_numpy(pad)
        if self.image_transforms is not None:
            for key in (*self.video_keys, *self.image_keys):
                if key in item:
                    item[key] = self.image_transforms(item[key])
        ti = item.get("task_index")
        if ti is not None:
            item["task"] = self.task_strings.get(int(ti), episode.meta.tasks[0] if episode.meta.tasks else "")
        elif episode.meta.tasks:
            item["task"] = episode.meta.tasks[0]
        return item


def _decode_image(data: bytes, episode: Episode, key: str, frame: int) -> torch.Tensor:
    """Encoded image bytes (PNG/JPEG, from the frame table) → float32 (C, H, W) in [0, 1]."""
    from torchcodec.decoders import decode_image

    try:
        u8 = decode_image(bytes(data), mode="RGB")
    except (RuntimeError, ValueError) as e:
        raise EpisodeError(f"{episode.where}: image {key!r} of frame {frame} does not decode ({e})") from e
    return to_float(u8)
