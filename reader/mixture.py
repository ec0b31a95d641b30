"""``mix``: several packed datasets as one stream, each source drawn in proportion to its weight.

What an epoch of a mixture is:

* It yields ``num_samples // world_size`` samples per rank (``num_samples`` defaults to the sum of
  the sources' frames), split over DataLoader workers as a single dataset splits its frames.
* Every draw picks source ``i`` with probability ``weights[i] / sum(weights)``, independently:
  the choices are a pure function of ``(seed, epoch, rank, worker, weights)``
  (:func:`source_choices`), so realised shares follow a binomial law around the weights.
* Each source streams its own slot of frames (its rank/worker share) in its usual pool order.
  Every mixture epoch starts each source on a fresh pass; a source that runs out within the epoch
  starts its next pass, with a new order (source epoch ``epoch * PASS_STRIDE + pass``). So frames
  repeat only across passes: a heavily weighted small dataset is replayed, a lightly weighted
  large one is only partly seen in an epoch (which part changes with the epoch).

Memory: each source keeps its own episode pool and frame cache per worker, so they add up over
sources (lower ``episode_pool_size`` per source when mixing many).

Resume: the state is the epoch, the samples this slot yielded, and each source's own (small,
exact) resume state with its pass number. On load the choices are re-simulated (no reads) and
every source resumes where it stopped, so the rest of the epoch comes out exactly as uninterrupted.
Weights may change between epochs (:meth:`MixedDataset.set_weights`, a curriculum); a state taken
under other weights is refused. ``set_epoch`` and ``set_weights`` called in the main process reach
DataLoader workers at their next epoch, ``persistent_workers=True`` included (reader/shared.py).

Keys: a mixture yields the keys every source has (after each source's ``rename``), plus
``dataset_index`` (int64, the source's position). A shared key must have the same dtype, shape and
window length in every source, and a windowed key must cover the same seconds (deltas are resolved
with each source's own fps, so give every source the same ``delta_timestamps`` in seconds).
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset

from .epochs import Resumable
from .mixspec import check_compatible
from .epoch_plan import samples_per_rank, slot_range
from .shared import MainSetting
from .pool import stable_seed
from .io_stats import Stats
from .world import World

log = logging.getLogger(__name__)

#: Source epoch of pass ``p`` in mixture epoch ``e`` is ``e * PASS_STRIDE + p``.
PASS_STRIDE = 1 << 20
_CHUNK = 4096
_TAG = 0x6D1C  # separates the choice stream from every other stream seeded from the same seed


def normalize_weights(weights: Sequence[float], n: int) -> list[float]:
    """Weights as probabilities; raises ValueError showing them when they cannot be."""
    w = [float(x) for x in weights]
    if len(w) != n:
        raise ValueError(f"mix: {len(w)} weights {w} for {n} datasets; give one weight per dataset")
    if any(not np.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
        raise ValueError(f"mix: weights {w} must be finite, >= 0, and not all 0")
    total = sum(w)
    return [x / total for x in w]


def source_choices(probs: Sequence[float], seed: int, epoch: int, world: World) -> Iterator[int]:
    """Endless stream of source positions for ``world``'s slot, i.i.d. with probabilities ``probs``.

    Pure in ``(probs, seed, epoch, rank, worker)``: the same on every machine. Drawn in chunks of
    uniforms so skipping ``k`` draws on resume costs O(k) vectorised work.
    """
    rng = np.random.default_rng(stable_seed(seed, epoch, world.rank, world.worker, _TAG))
    cdf = np.cumsum(np.asarray(probs, dtype=np.float64))
    cdf[-1] = np.inf  # rounding can never pick past the last source
    while True:
        yield from np.searchsorted(cdf, rng.random(_CHUNK), side="right").tolist()


class MixedDataset(Resumable, IterableDataset):
    """Built by :func:`mix`; see the module docstring for epochs, keys and resume."""

    _what = "mixture resume state"

    def __init__(self, datasets: Sequence[Any], weights: Sequence[float], seed: int = 0,
                 num_samples: int | None = None) -> None:
        super().__init__()
        if not datasets:
            raise ValueError("mix: give at least one dataset")
        self.datasets = list(datasets)
        if len({id(d) for d in self.datasets}) != len(self.datasets):
            raise ValueError("mix: the same dataset object twice; each source iterates on its own, "
                             "so construct it twice (e.g. with another seed or episodes=)")
        batched = [i for i, d in enumerate(self.datasets) if getattr(d, "batch_size", None) is not None]
        if batched:
            raise ValueError(f"mix: datasets {batched} yield batches (batch_size); a mixture draws single samples: "
                             "build them without batch_size and batch with the DataLoader")
        worlds = {(d.world.rank, d.world.world_size) for d in self.datasets}
        if len(worlds) != 1:
            raise ValueError(f"mix: datasets disagree on (rank, world_size): {sorted(worlds)}; build them with the same ranks")
        self.world = self.datasets[0].world
        self.keys, self.dropped = check_compatible(self.datasets)
        if any(self.dropped):
            log.info("mix: keys not in every dataset are left out: %s", self.dropped)
        self.weights = normalize_weights(weights, len(self.datasets))
        self.seed = int(seed)
        self.num_samples = int(num_samples) if num_samples is not None else sum(d.meta.total_frames for d in self.datasets)
        if self.num_samples < 0:
            raise ValueError(f"mix: num_samples={num_samples} must be >= 0")
        self._init_epochs()
        # Weights the next iteration follows (reaches DataLoader workers, see reader/shared.py).
        self._next_weights = MainSetting(self.weights, torch.float64)
        self._stats = Stats()
        self._passes: list[int] = [0] * len(self.datasets)
        self._started: list[bool] = [False] * len(self.datasets)

    def __len__(self) -> int:
        """Samples this rank yields per epoch: ``num_samples // world_size``."""
        return samples_per_rank(self.num_samples, self.world.world_size)

    def set_weights(self, weights: Sequence[float]) -> None:
        """New weights from the next iteration on (between epochs: a curriculum). Call it in the
        main process before the epoch starts: DataLoader workers, persistent ones too, take the new
        weights when they start their next epoch, not in the middle of one."""
        self.weights = normalize_weights(weights, len(self.datasets))
        self._next_weights.set(self.weights)

    def shares(self) -> list[float]:
        """Realised share of each source among the samples drawn so far (this process and its
        DataLoader workers); compare with ``weights``."""
        snap = self._stats.snapshot()
        counts = [snap.get(f"mix_drawn_{i}", 0.0) for i in range(len(self.datasets))]
        total = sum(counts)
        return [c / total if total else 0.0 for c in counts]

    # --- resume -----------------------------------------------------------------------------
    def _epoch_samples(self) -> int:
        return self.num_samples

    def _config(self) -> dict[str, Any]:
        return {"seed": self.seed, "weights": list(self.weights), "num_samples": self.num_samples,
                "world_size": self.world.world_size, "datasets": len(self.datasets)}

    def _extra_state(self) -> dict[str, Any]:
        """Per source: its pass and its own resume state (None before its first sample)."""
        return {"sources": [
            {"pass": self._passes[i], "state": d.state_dict()} if self._started[i] else None
            for i, d in enumerate(self.datasets)
        ]}

    def _load_extra(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state["yielded"], int):
            raise ValueError("mixture resume state: 'yielded' must be this slot's count (one state per worker)")
        saved = state["sources"]
        self._started = [s is not None for s in saved]
        self._passes = [int(s["pass"]) if s is not None else 0 for s in saved]

    # --- iteration --------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Start an iteration of the next epoch (reader/epochs.py); weights are taken now too."""
        world = World.detect(self.world.rank, self.world.world_size)
        weights = self._next_weights.take()
        epoch, skip, resume = self._begin(world)
        n = len(self.datasets)
        iters: list[Iterator[dict[str, Any]] | None] = [None] * n
        if resume is not None:
            # The weights load_state_dict checked the state against; _passes/_started are loaded.
            for i, saved in enumerate(resume["sources"]):
                if saved is not None:
                    self.datasets[i].load_state_dict(saved["state"])
                    iters[i] = iter(self.datasets[i])
        else:
            self.weights = [float(w) for w in weights]
            self._passes, self._started = [0] * n, [False] * n
        return self._run(world, epoch, list(self.weights), skip, iters)

    def _run(self, world: World, epoch: int, weights: list[float], skip: int, iters: list) -> Iterator[dict[str, Any]]:
        lo, hi = slot_range(self.num_samples, world)
        choices = source_choices(weights, self.seed, epoch, world)
        for _ in range(skip):
            next(choices)
        keys = self.keys
        try:
            for _ in range(hi - lo - skip):
                i = next(choices)
                item = self._next_of(i, iters, epoch, world)
                out = {k: item[k] for k in keys if k in item}
                out["dataset_index"] = torch.tensor(i, dtype=torch.int64)
                self._yielded += 1
                self._stats.add(f"mix_drawn_{i}")
                yield out
        finally:
            for it in iters:
                if it is not None and hasattr(it, "close"):
                    it.close()
            self._stats.flush()

    def _next_of(self, i: int, iters: list, epoch: int, world: World) -> dict[str, Any]:
        """Next sample of source ``i``, starting its next pass when the current one has run out."""
        if iters[i] is not None:
            try:
                return next(iters[i])
            except StopIteration:
                pass
        if self._started[i]:
            self._passes[i] += 1
        self._started[i] = True
        self.datasets[i].set_epoch(epoch * PASS_STRIDE + self._passes[i])
        iters[i] = iter(self.datasets[i])
        try:
            return next(iters[i])
        except StopIteration:
            raise ValueError(
                f"mix: dataset {i} ({_name(self.datasets[i])}) has no samples for rank {world.rank} worker "
                f"{world.worker} of {world.num_workers}; use fewer DataLoader workers or ranks"
            ) from None

def _name(ds: Any) -> str:
    store = getattr(ds, "store", None)
    return getattr(store, "url", type(ds).__name__)


def mix(datasets: Sequence[Any], weights: Sequence[float] | None = None, *, seed: int = 0,
        num_samples: int | None = None) -> MixedDataset:
    """One iterable dataset drawing from ``datasets`` (``LeRobotShardDataset`` or transition views)
    with probabilities ``weights`` (default: proportional to each dataset's frames).

    ``num_samples``: samples per epoch over all ranks (default: the sum of the datasets' frames).
    Samples carry ``dataset_index``. See the module docstring for epochs, keys and resume.
    """
    if weights is None:
        weights = [d.meta.total_frames for d in datasets]
    return MixedDataset(datasets, weights, seed, num_samples)
