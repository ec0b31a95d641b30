"""Delta windows: LeRobot's ``delta_timestamps`` (seconds) → frame offsets, and per-frame windows.

Exactly LeRobot 0.6.1's rules (its ``get_delta_indices`` and ``DatasetReader._get_query_indices``):
each delta ``d`` (seconds) becomes the frame offset ``round(d * fps)`` and must be a multiple of
``1 / fps`` within ``tolerance_s``; the frame queried for offset ``k`` at episode frame ``i`` is
``clamp(i + k, 0, length - 1)`` and it is padding when ``i + k`` falls outside the episode. Offsets are episode-local frames here; the episode is in
memory, so a window is a slice of arrays, never a lookup across episodes.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np


def delta_indices(
    delta_timestamps: Mapping[str, Sequence[float]] | None,
    fps: int,
    tolerance_s: float,
    available: Iterable[str],
) -> dict[str, np.ndarray]:
    """Frame offsets (int64) per key for ``delta_timestamps`` (seconds).

    Raises ValueError naming the key and the value when a delta is not a multiple of ``1 / fps``
    within ``tolerance_s`` seconds, and when a key is not a feature (listing the ones there are).
    """
    if not delta_timestamps:
        return {}
    available = list(available)
    out: dict[str, np.ndarray] = {}
    for key, deltas in delta_timestamps.items():
        if key not in available:
            raise ValueError(
                f"delta_timestamps key {key!r} is not a feature of this dataset; "
                f"available: {', '.join(available)}"
            )
        deltas = list(deltas)
        if not deltas:
            raise ValueError(f"delta_timestamps[{key!r}] is empty; give at least one offset in seconds")
        offsets = []
        for d in deltas:
            k = round(float(d) * fps)
            if abs(k / fps - float(d)) > tolerance_s:
                raise ValueError(
                    f"delta_timestamps[{key!r}] has {d!r} s, which is not a multiple of 1/fps "
                    f"(fps={fps}) within tolerance_s={tolerance_s}; nearest is {k}/{fps} s"
                )
            offsets.append(k)
        out[key] = np.asarray(offsets, dtype=np.int64)
    return out


def window_indices(frame: int | np.ndarray, length: int, deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Episode-local frames of the window at ``frame`` and its padding mask (broadcasts: an array
    of frames against ``deltas[None, :]`` gives every frame's window at once).

    ``deltas`` are frame offsets (from :func:`delta_indices`). Returns ``(idx, is_pad)``: ``idx``
    int64, clamped into ``[0, length)``; ``is_pad`` bool, True where ``frame + delta`` left the episode.
    """
    raw = deltas + frame
    idx = np.clip(raw, 0, length - 1)
    return idx, idx != raw
