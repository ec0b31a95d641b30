"""Which frames of which episodes each (rank, worker) slot yields, per (seed, epoch).

Everything is recomputed from (episode lengths per shard, seed, epoch, world): no shared state,
no coordination between processes. The plan:

1. Permute the shard order per (seed, epoch) (identity when ``shuffle=False``).
2. Concatenate the episodes of the permuted shards into one sequence of ``T`` frames.
3. Rank ``r`` takes frames ``[r*N, (r+1)*N)`` with ``N = T // world_size``: every rank yields
   exactly ``N`` samples per epoch, so no rank runs dry while another still has data (a DDP hang).
   The last ``T - world_size*N < world_size`` frames of the permuted sequence are left out; which
   ones rotates with the epoch when shuffling.
4. A rank's range is split into ``num_workers`` contiguous parts (sizes differ by at most 1).

A slot's range maps to *spans* ``(shard, position, start, stop)`` of episode-local frames. An
episode on a boundary is shared by two slots: each loads it whole (windows need the whole episode)
and emits only its own frames. Splitting at frame level (with ranged reads of single episodes)
means fewer shards than ranks × workers still works and nothing idles; the cost is that boundary
episodes are read twice and a slot reads shards partially.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .pool import stable_seed
from .world import World

_TAG = 0x5EED  # separates the shard order from every other stream seeded from the same seed


@dataclass(frozen=True)
class Span:
    """Frames ``[start, stop)`` (episode-local) of one episode: ``shard`` is a position in the
    manifest's shard list, ``position`` the episode's position in that shard's episode list (not
    its ``episode_index``)."""

    shard: int
    position: int
    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start


def shard_order(num_shards: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Shard positions in the order this epoch reads them (the same on every rank)."""
    if not shuffle:
        return np.arange(num_shards)
    return np.random.default_rng(stable_seed(seed, epoch, _TAG)).permutation(num_shards)


def samples_per_rank(total_frames: int, world_size: int) -> int:
    """Samples every rank yields per epoch: ``total_frames // world_size``."""
    return total_frames // world_size


def slot_range(total_frames: int, world: World) -> tuple[int, int]:
    """Positions ``[lo, hi)`` in the epoch's frame sequence that ``world``'s slot yields."""
    n = samples_per_rank(total_frames, world.world_size)
    base = world.rank * n
    lo = base + (world.worker * n) // world.num_workers
    hi = base + ((world.worker + 1) * n) // world.num_workers
    return lo, hi


def plan_spans(
    lengths: Sequence[Sequence[int]], seed: int, epoch: int, world: World, shuffle: bool = True
) -> list[Span]:
    """The spans ``world``'s slot yields this epoch, in the order they enter its pool.

    ``lengths[s][e]`` is the frame count of episode ``e`` of shard ``s`` (selected episodes only;
    a zero-length entry is never emitted).
    """
    order = shard_order(len(lengths), seed, epoch, shuffle)
    shard_of: list[int] = []
    ep_of: list[int] = []
    ep_len: list[int] = []
    for s in order:
        for e, n in enumerate(lengths[s]):
            shard_of.append(int(s))
            ep_of.append(e)
            ep_len.append(int(n))
    if not ep_len:
        return []
    ends = np.cumsum(ep_len)
    starts = ends - np.asarray(ep_len)
    lo, hi = slot_range(int(ends[-1]), world)
    if hi <= lo:
        return []
    first = int(np.searchsorted(ends, lo, side="right"))
    last = int(np.searchsorted(ends, hi - 1, side="right"))
    spans = []
    for i in range(first, last + 1):
        a = max(lo, int(starts[i])) - int(starts[i])
        b = min(hi, int(ends[i])) - int(starts[i])
        if b > a:
            spans.append(Span(shard_of[i], ep_of[i], a, b))
    return spans
