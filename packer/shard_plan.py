"""Pure planning: which episodes go in which shard, from estimated sizes. No I/O.

Episodes are taken in order and a shard is closed when adding the next episode would pass the
target size (bytes); an episode larger than the target gets a shard of its own. Episodes are never
split. The plan depends only on its inputs, so the same source and options give the same shards
(the basis of resuming a killed run). Estimates come from source file sizes prorated by time or
rows (``estimate_episode_bytes``); real shards differ from the target by the estimate's error.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from ..errors import UsageError

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str | int) -> int:
    """``"512MB"`` → 512_000_000 bytes; accepts B, KB, MB, GB, TB (powers of 10) and KiB, MiB, GiB, TiB."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
    if not m or m[2].upper() not in _UNITS:
        raise UsageError(f"size {text!r}: expected a number with an optional unit, one of {sorted(_UNITS)[1:]}, e.g. '512MB'")
    size = int(float(m[1]) * _UNITS[m[2].upper()])
    if size <= 0:
        raise UsageError(f"size {text!r}: must be positive")
    return size


def plan_shards(sizes: Sequence[int], target: int) -> list[list[int]]:
    """Group positions ``0..len(sizes)-1`` into consecutive shards of estimated total ≤ ``target`` bytes.

    Every position lands in exactly one shard, in order; a shard holds at least one episode.
    """
    if target <= 0:
        raise UsageError(f"target shard size {target}: must be positive")
    shards: list[list[int]] = []
    total = 0
    for i, size in enumerate(sizes):
        if not shards or (total + size > target and shards[-1]):
            shards.append([])
            total = 0
        shards[-1].append(i)
        total += size
    return shards


def estimate_episode_bytes(
    length: int,
    data_file_bytes: int,
    data_file_rows: int,
    video_shares: Mapping[str, tuple[int, float, float]],
) -> int:
    """Estimated shard bytes of one episode.

    ``data_file_bytes``/``data_file_rows`` prorate the episode's parquet by its ``length`` (rows);
    ``video_shares`` maps camera → (mp4 bytes, episode duration in s, mp4 duration in s), prorated
    by time. Tar headers add ~1.5 KB per member.
    """
    data = data_file_bytes * length / max(data_file_rows, 1)
    video = sum(b * dur / max(total, 1e-9) for b, dur, total in video_shares.values())
    return int(data + video) + 1536 * (2 + len(video_shares))
