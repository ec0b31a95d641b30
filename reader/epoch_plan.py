"""Which frames of which episodes each (rank, worker) slot yields, per (seed, epoch).

Everything is recomputed from (episode lengths per shard, seed, epoch, world): no shared state,
no coordination between processes. The plan:

1. Permute the shard order per (seed, epoch) (identity when ``shuffle=False``).
2. Concatenate the episodes of the permuted shards into one sequence of ``T`` frames.
3. Rank ``r`` takes frames ``[r*N, (r+1)*N)`` with ``N = T // world_size``: every rank yields
   exactly ``N`` samples per epoch, so no rank runs dry while another still has data (a DDP hang).
   The last ``T - world_size*N < world_size`` frames of the permuted sequence are left out; which
   ones rotates with the epoch when shuffling.
4. A rank's range is split into ``num_workers`` contiguous parts (sizes differ by at most 1) of
   the sequence of its episodes. When the rank has too few episodes for every worker's pool to
   fill (fewer than ``pool_size * num_workers``), each episode is first cut into ``k`` slices
   (at most one per worker) and the sequence is one slice of every episode (episode ``i`` its
   slice ``i % k``), then another of every episode (slice ``(i + 1) % k``), and so on: a worker
   then draws from ``k`` times as many episodes (a batch comes from one worker, so this is what
   lets a batch mix as many episodes as a global shuffle would), at the price of each of those
   episodes being read by ``k`` workers.

A slot's range maps to *spans* ``(shard, position, start, stop)`` of episode-local frames. An
episode on a boundary or cut into slices is shared by several slots: each loads it whole (windows
need the whole episode) and emits only its own frames. Splitting at frame level (with ranged reads
of single episodes) means fewer shards than ranks × workers still works and nothing idles; the
cost is that shared episodes are read more than once and a slot reads shards partially.
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


def slices_per_episode(num_spans: int, num_workers: int, pool_size: int, shuffle: bool = True) -> int:
    """Into how many slices a rank's episodes are cut for its workers: enough that every worker's
    pool can fill (``num_spans * slices / num_workers >= pool_size``), at most one per worker;
    1 when a worker already has a full pool's worth of episodes, or without shuffling."""
    if not shuffle or num_workers <= 1 or num_spans == 0:
        return 1
    return max(1, min(num_workers, -(-pool_size * num_workers // num_spans)))


def _cut(spans: Sequence[Span], lo: int, hi: int) -> list[Span]:
    """The parts of ``spans`` at positions ``[lo, hi)`` of their concatenated frames."""
    out, pos = [], 0
    for s in spans:
        a, b = max(lo - pos, 0), min(hi - pos, s.length)
        if b > a:
            out.append(Span(s.shard, s.position, s.start + a, s.start + b))
        pos += s.length
        if pos >= hi:
            break
    return out


def plan_spans(
    lengths: Sequence[Sequence[int]], seed: int, epoch: int, world: World, shuffle: bool = True,
    pool_size: int = 1,
) -> list[Span]:
    """The spans ``world``'s slot yields this epoch, in the order they enter its pool.

    ``lengths[s][e]`` is the frame count of episode ``e`` of shard ``s`` (selected episodes only;
    a zero-length entry is never emitted). ``pool_size``: the workers' episode pool size, which
    decides into how many slices the rank's episodes are cut (:func:`slices_per_episode`).
    """
    order = shard_order(len(lengths), seed, epoch, shuffle)
    episodes = [Span(int(s), e, 0, int(n)) for s in order for e, n in enumerate(lengths[s])]
    total = sum(e.length for e in episodes)
    n = samples_per_rank(total, world.world_size)
    ranked = _cut(episodes, world.rank * n, (world.rank + 1) * n)
    k = slices_per_episode(len(ranked), world.num_workers, pool_size, shuffle)
    # Round j holds one slice of every episode: slice (i + j) % k of the i-th, so a worker's
    # episodes are cut at different places (its batches are not all episode starts or all ends).
    sliced = [Span(s.shard, s.position, s.start + c * s.length // k, s.start + (c + 1) * s.length // k)
              for j in range(k) for i, s in enumerate(ranked) for c in [(i + j) % k]]
    lo, hi = slot_range(total, world)
    return _cut([s for s in sliced if s.length], lo - world.rank * n, hi - world.rank * n)
