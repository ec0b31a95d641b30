"""``LeRobotShardDataset``: packed shards → samples identical to ``LeRobotDataset[i]``.

Data flow, one stage per module::

    manifest (storage.py) → plan_spans (plan.py) → pool_order (pool.py)
      → ranged reads in span order (storage.py) → parse_episode (episodes.py)
      → SampleBuilder.build (sample.py: window.py, video.py)

Why ranged reads instead of webdataset's shard-list → split → tar-iteration stages: the manifest
already holds every member's byte range, so each (rank, worker) slot reads exactly the episodes
the plan gives it, even when there are fewer shards than slots (split at episode level, nothing
idles), and resume refills the pool without reading the epoch so far. The order of a slot's
samples is a pure function of (manifest, seed, epoch, rank, worker): workers never list storage
and share no state.

Resume (``state_dict``/``load_state_dict``): the state is the epoch and the number of samples this
slot yielded. On load the pool order is re-simulated from span lengths (no reads), spans exhausted
before the stop are never read again, and the rest of the epoch comes out exactly: nothing
repeated, nothing dropped, provided seed, shuffle, pool size, episodes, rank/world size and
``num_workers`` are the same as when the state was taken (checked; a mismatch raises).
"""

from __future__ import annotations

import hashlib
import json
import logging
from contextlib import nullcontext
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch.utils.data import IterableDataset

from . import io_stats as S
from .episodes import EpisodeError, EpisodeLoader
from .meta import DatasetMeta
from .epoch_plan import Span, plan_spans, samples_per_rank
from .pool import pool_order, stable_seed
from .sample import SampleBuilder
from .shared import MainSetting
from .storage import Store
from .video import EpisodeVideo, FrameCache, lookahead_pays, recycle_frame_memory
from .window import delta_indices
from .world import World

log = logging.getLogger(__name__)

#: Stats counter: video frames torchcodec decoded and returned (÷ frames emitted per camera ≈ decode
#: work per frame; GOP reuse brings it near 1).
FRAMES_DECODED = "frames_decoded"
STATE_VERSION = 1
K_VERSION, K_EPOCH, K_YIELDED, K_SLOT, K_LAYOUT = "version", "epoch", "yielded", "slot", "layout"


class LeRobotShardDataset(IterableDataset):
    """Streams a packed LeRobot dataset (``lerobot-wds pack`` output) as LeRobot sample dicts.

    ``url``: the packed directory or its ``manifest.json`` (local path or fsspec URL), or a
    ready :class:`Store`. Keyword arguments keep LeRobot's names and units: ``delta_timestamps``
    (seconds per key), ``tolerance_s`` (seconds), ``episodes`` (episode indices to keep).
    ``episode_pool_size`` whole episodes are shuffled together per worker; ``frame_cache_mb``
    bounds decoded frames kept for reuse per worker. ``rank``/``world_size`` default to
    torch.distributed, then ``RANK``/``WORLD_SIZE``, then a single process. Call
    :meth:`set_epoch` before each epoch (the order depends on (seed, epoch)); it reaches
    DataLoader workers at their next epoch, ``persistent_workers=True`` included (shared memory,
    see reader/shared.py).
    ``return_uint8=True`` (lerobot's flag of that name) gives camera frames as uint8 in [0, 255]
    instead of float32 in [0, 1]: a quarter of the bytes through DataLoader workers; convert on
    the GPU (``frames / 255.0``: the float32 values, bit for bit on the CPU).
    ``on_error="skip"`` logs and counts unreadable episodes/samples instead of raising (see
    :meth:`stats`); a rank that skips yields fewer than ``len(self)`` samples, so under DDP keep
    the default ``"raise"`` or let the training loop tolerate uneven ranks.
    ``rename`` maps stored feature names to the names samples (and ``meta``) carry, e.g.
    ``{"observation.images.cam_high": "observation.images.top"}`` so datasets of different robots
    share keys in a mixture (``lerobot_wds.reader.mix``); ``delta_timestamps`` uses the new names.
    """

    def __init__(
        self,
        url: str | Store,
        *,
        delta_timestamps: Mapping[str, Sequence[float]] | None = None,
        episodes: Sequence[int] | None = None,
        episode_pool_size: int = 16,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        image_transforms: Callable[[torch.Tensor], torch.Tensor] | None = None,
        tolerance_s: float = 1e-4,
        video_decode_device: str = "cpu",
        storage_options: Mapping[str, Any] | None = None,
        on_error: str = "raise",
        frame_cache_mb: float = 512,
        rename: Mapping[str, str] | None = None,
        return_uint8: bool = False,
    ) -> None:
        super().__init__()
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error={on_error!r}; choose 'raise' or 'skip'")
        if episode_pool_size < 1:
            raise ValueError(f"episode_pool_size={episode_pool_size} must be >= 1")
        self.store = url if isinstance(url, Store) else Store(url, storage_options)
        manifest = self.store.read_manifest()
        known = {e.episode_index for s in manifest.shards for e in s.episodes}
        if episodes is not None:
            missing = sorted(set(episodes) - known)
            if missing:
                raise ValueError(f"episodes {missing} are not in {self.store.url} (it has {len(known)}: {min(known)}..{max(known)})")
        self.meta = DatasetMeta(manifest, list(episodes) if episodes is not None else None, rename, self.store.url)
        sel = set(episodes) if episodes is not None else None
        # Per shard: (episode entry, ...) of selected episodes, and their lengths for the plan.
        self._entries = [[e for e in s.episodes if sel is None or e.episode_index in sel] for s in manifest.shards]
        self._lengths = [[e.length for e in es] for es in self._entries]
        self._shard_names = [s.name for s in manifest.shards]
        self.delta_timestamps = dict(delta_timestamps) if delta_timestamps else None
        # Frame offsets per key, in the names samples carry; the builder works in stored names.
        self.delta_indices = delta_indices(delta_timestamps, manifest.fps, tolerance_s, self.meta.features)
        stored = {new: old for old, new in self.meta.rename.items()}
        self._video_keys, self._image_keys = manifest.video_keys, manifest.image_keys
        self._builder = SampleBuilder(
            self._video_keys, self._image_keys, self.meta.task_strings,
            {stored.get(k, k): d for k, d in self.delta_indices.items()}, image_transforms, return_uint8,
        )
        # Output renames, the padding masks of windowed keys included.
        self._rename = dict(self.meta.rename)
        self._rename.update({f"{old}_is_pad": f"{new}_is_pad" for old, new in self.meta.rename.items()})
        if self._video_keys or self._image_keys:
            # Importing torchcodec takes ~1.5 s; do it once here so forked DataLoader workers
            # inherit it instead of each paying it before their first batch.
            import torchcodec.decoders  # noqa: F401
        self.return_uint8 = return_uint8
        self.episode_pool_size = episode_pool_size
        self.shuffle = shuffle
        self.seed = seed
        self.world = World.detect(rank, world_size)
        self.video_decode_device = video_decode_device
        self.on_error = on_error
        self.frame_cache_bytes = int(frame_cache_mb * (1 << 20))
        #: Epoch of the iteration in progress (or of the loaded state); what state_dict() reports.
        self.epoch = 0
        # Epoch the next iteration follows, set from the main process or inside a worker.
        self._next_epoch = MainSetting(0, torch.int64)
        self._resume: dict[str, Any] | None = None
        self._yielded = 0
        self._slot: tuple[int, int, int, int] | None = None
        self.skipped = 0

    # --- sizes and epochs -------------------------------------------------------------------
    def __len__(self) -> int:
        """Samples this rank yields per epoch: total frames // world_size (the same on every rank)."""
        return samples_per_rank(self.meta.total_frames, self.world.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration follows. Called in the main process, it
        reaches DataLoader workers, persistent ones too; called in a worker, only that worker.
        A loaded resume state is kept when it is for this epoch (so ``set_epoch(e)`` at the top of
        a resumed epoch loop is safe) and forgotten otherwise."""
        if self._resume is not None and int(self._resume[K_EPOCH]) != int(epoch):
            self._resume = None
        self.epoch = int(epoch)
        self._next_epoch.set(self.epoch)

    # --- resume -----------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "shuffle": self.shuffle, "episode_pool_size": self.episode_pool_size,
            "world_size": self.world.world_size, "total_frames": self.meta.total_frames,
        }

    def state_dict(self) -> dict[str, Any]:
        """Epoch and samples yielded so far by this slot (rank, worker), plus the settings the
        order depends on. Small and exact; see the module docstring for what resume guarantees."""
        return {K_VERSION: STATE_VERSION, K_EPOCH: self.epoch, K_YIELDED: self._yielded,
                K_SLOT: list(self._slot) if self._slot else None, "config": self._config(), K_LAYOUT: self._layout()}

    def _layout(self) -> str:
        """Fingerprint of what the order is planned from: shard names and, per shard, the selected
        episodes and their lengths (another ``--shard-size`` or another pack changes it)."""
        rows = [[name, [[e.episode_index, e.length] for e in es]] for name, es in zip(self._shard_names, self._entries)]
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Make the next iteration continue the epoch recorded in ``state`` where it stopped."""
        if state.get(K_VERSION) != STATE_VERSION:
            raise ValueError(f"resume state version {state.get(K_VERSION)!r}; this reader reads {STATE_VERSION}")
        if K_LAYOUT in state and state[K_LAYOUT] != self._layout():
            raise ValueError(
                f"resume state was taken on another pack (layout {state[K_LAYOUT]}, {self.store.url} has "
                f"{self._layout()}: other shards or episodes, e.g. another --shard-size); resume on the pack "
                "the state was taken on, or start the epoch afresh"
            )
        diff = {k: (v, self._config()[k]) for k, v in state.get("config", {}).items() if self._config().get(k) != v}
        if diff:
            raise ValueError(
                "resume state was taken with other settings (saved, now): "
                + ", ".join(f"{k}={a!r}, {b!r}" for k, (a, b) in diff.items())
                + "; construct the dataset with the saved settings to resume exactly"
            )
        self.epoch = int(state[K_EPOCH])
        self._next_epoch.set(self.epoch)  # later iterations follow this epoch until set_epoch
        self._resume = dict(state)
        # Until the next iteration starts, state_dict() must report this state unchanged
        # (StatefulDataLoader snapshots workers right after loading).
        self._yielded = int(state[K_YIELDED])
        self._slot = tuple(state[K_SLOT]) if state.get(K_SLOT) else None

    # --- iteration --------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Start an iteration. The epoch, slot and resume point are taken now, not at the first
        ``next``: StatefulDataLoader snapshots ``state_dict()`` right after ``iter()``, and a
        persistent worker's snapshot must already be the new epoch's."""
        world = World.detect(self.world.rank, self.world.world_size)
        epoch = int(self._next_epoch.take())
        slot = (world.rank, world.world_size, world.worker, world.num_workers)
        skip = 0
        resume = self._resume
        if resume is not None:
            saved = resume.get(K_SLOT)
            if saved is not None and tuple(saved) != slot:
                raise ValueError(
                    f"resume state belongs to (rank, world_size, worker, num_workers)={tuple(saved)}, "
                    f"this iterator is {slot}; resume with the same ranks and num_workers"
                )
            epoch, skip = int(resume[K_EPOCH]), int(resume[K_YIELDED])
        self._resume = None
        self.epoch, self._slot, self._yielded = epoch, slot, skip
        return self._run(world, epoch, skip)

    def _run(self, world: World, epoch: int, skip: int) -> Iterator[dict[str, Any]]:
        if world.num_workers > 1 or torch.utils.data.get_worker_info() is not None:
            recycle_frame_memory()  # a DataLoader worker: see reader/video.py
        spans = plan_spans(self._lengths, self.seed, epoch, world, self.shuffle)
        if not spans and self.meta.total_frames:
            log.warning(
                "rank %d worker %d of %d has no frames to yield: %d frames are split over %d ranks × "
                "%d workers; use fewer DataLoader workers", world.rank, world.worker, world.num_workers,
                self.meta.total_frames, world.world_size, world.num_workers,
            )
        order = pool_order([s.length for s in spans], self.episode_pool_size,
                           stable_seed(self.seed, epoch, world.rank, world.worker), self.shuffle)
        exhausted = set()
        for _ in range(skip):  # re-simulate the draws already yielded: no reads
            draw = next(order, None)
            if draw is None:
                break
            if draw[2]:
                exhausted.add(draw[0])
        todo = [p for p in range(len(spans)) if p not in exhausted]
        yield from self._emit(spans, todo, order)

    def _emit(self, spans: list[Span], todo: list[int], order: Iterator[tuple[int, int, bool]]) -> Iterator[dict]:
        stats = self.store.stats
        where = [(self._shard_names[s.shard], self._entries[s.shard][s.position]) for s in spans]
        loader = EpisodeLoader(self.store, where, todo, self._video_keys, self._image_keys, self.on_error)
        cache = FrameCache(self.frame_cache_bytes)
        frame_bytes = sum(int(v.get("width", 0)) * int(v.get("height", 0)) * 3 for v in self.meta.manifest.videos.values())
        mean_length = sum(s.length for s in spans) / max(len(spans), 1)
        lookahead = 4 if lookahead_pays(self.frame_cache_bytes, self.episode_pool_size, mean_length, frame_bytes) else 0
        videos: dict[int, EpisodeVideo | None] = {}
        timed = bool(self._video_keys or self._image_keys)  # decode seconds, when there is decoding
        try:
            for p, f, done in order:
                ep = loader.get(p)
                if ep is None:  # episode skipped (on_error="skip")
                    self._count_skip(stats)
                    self._yielded += 1
                    if done:
                        loader.drop(p)
                    continue
                video = videos.get(p)
                if video is None and self._video_keys:
                    video = videos[p] = EpisodeVideo(ep, cache, self.video_decode_device, lookahead)
                try:
                    with stats.timer(S.DECODE_S) if timed else nullcontext():
                        item = self._builder.build(ep, video, spans[p].start + f)
                except EpisodeError as e:
                    if self.on_error == "raise":
                        raise
                    log.warning("skipping frame %d: %s", spans[p].start + f, e)
                    self._count_skip(stats)
                    item = None
                if done:
                    loader.drop(p)
                    v = videos.pop(p, None)
                    if v is not None:
                        stats.add(FRAMES_DECODED, v.decoded)
                        v.close()
                if self._yielded % 32 == 0:
                    stats.observe(S.POOL_EPISODES, len(loader.loaded))
                self._yielded += 1
                if item is not None:
                    if self._rename:
                        item = {self._rename.get(k, k): v for k, v in item.items()}
                    yield item
        finally:
            try:
                stats.flush()
            except (OSError, NameError):  # at interpreter exit, builtins may already be gone
                pass

    def _count_skip(self, stats: S.Stats) -> None:
        self.skipped += 1
        stats.add(S.SKIPPED)

    def io_stats(self) -> dict[str, float]:
        """Fetch/decode/wait seconds, bytes, pool occupancy, retries and skips, summed over this
        process and its DataLoader workers (see reader/stats.py)."""
        return self.store.stats.snapshot()
