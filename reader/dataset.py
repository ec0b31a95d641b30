"""``LeRobotShardDataset``: packed shards → samples identical to ``LeRobotDataset[i]``.

Data flow, one stage per module::

    manifest (storage.py) → plan_spans (epoch_plan.py) → pool_order (pool.py)
      → ranged reads in span order (storage.py) → parse_episode (episodes.py)
      → SampleBuilder.build (sample.py: window.py, video.py)

Why ranged reads instead of webdataset's shard-list → split → tar-iteration stages: the manifest
already holds every member's byte range, so each (rank, worker) slot reads exactly the episodes
the plan gives it, even when there are fewer shards than slots (split at episode level, nothing
idles), and resume refills the pool without reading the epoch so far. The order of a slot's
samples is a pure function of (manifest, seed, epoch, rank, worker): workers never list storage
and share no state.

Decoding in the training process (``num_workers=0``), on ``MAIN_DECODE_STREAMS`` threads (this
one and helpers), so that loading uses the cores the training step leaves idle and never runs
into the step itself:

- batches built by the dataset (``batch_size``) are built one ahead of the loop, on a thread of
  their own (reader/one_ahead.py: "this thread" below is that one); a batch's draws are grouped by
  episode (all draws of an episode on one thread, in draw order); each thread takes the next
  group, longest first, whenever it is done with its last, decodes its samples' frames and writes
  them into their rows of the batch (``batch_runs``, ``_queue_rows``, reader/build_threads.py).
  The next batch's draws are queued before this thread collects this batch's, so the helpers go
  on with them while it waits for this batch's last group, collates the batch and hands it over
  (``_collect_rows``); this thread then joins in. Against collecting each batch before queuing the
  next: +4 % samples/s with windows and +5 % without, for one more batch of camera rows in memory,
  +0.10-0.19 GB peak RSS with windows (three interleaved A/B rounds of ``tools/bench_peers.py
  --child ours-batched bench_out/peers/packed 0 <win> 10 3 null``: 1,231 / 1,192 / 1,185 against
  1,148 / 1,149 / 1,143 with windows, 1,334 / 1,361 / 1,384 against 1,291 / 1,287 / 1,349 without);
  before it the helper was idle 7 % of the time, 1.15 ms a batch outside the groups and 0.7 ms at
  their end (a temporary timer). Not with ``on_error="skip"``, where a skipped sample moves the
  rows after it. Taking groups as threads come free instead of dealing them out beforehand
  (longest first to the least loaded thread, by count of draws):
  +7 % samples/s with windows and +3 % without, medians of three interleaved A/B rounds of the
  same child rows, within this machine's noise; a sampling profile before it had the helper
  thread on the CPU 0.71 times as long as this one. Against decoding on the helpers while this
  thread built one sample at a time (the single-sample scheme below), +15 % samples/s with
  windows and +38 % without (480x640, medians of four interleaved A/B rounds of
  ``tools/bench_peers.py --child ours-batched bench_out/peers/packed 0 <win> 8 3 null``: 448 / 513
  and 473 / 653), the same peak RSS;
- single samples: up to :data:`LOOKAHEAD` draws per helper after the one being built wait in a
  queue, no two of one episode (``_build_ahead``). This thread decodes the first itself unless a
  helper has taken it; each helper takes the last one nobody has taken. So the threads work from
  both ends of the queue, and the helpers go on decoding while this thread hands samples to the
  DataLoader and it collates them. Against runs of two draws, the second decoded by the helper
  while this thread built the first and waited for it: +13 % samples/s without windows and +10 %
  with (480x640, medians of three interleaved A/B rounds of ``tools/bench_peers.py --child ours
  bench_out/peers/packed 0 <win> 10 3 null``: 566 / 640 and 459 / 504), peak RSS within
  0.06 GB; a lookahead of 2 gave +3 % and +2 %. One FFmpeg thread per decoder, as everywhere: against
  two, 0.29 GB less peak RSS with the 50-episode pool of that benchmark for -5 % samples/s
  without windows and -1 % with (four A/B rounds, before the queue); on 240x320 frames it is
  slower (README, Reading).

Either way no decoder is used by two threads at once, each episode's frames are still decoded in
file order, once, and the samples and their order are exactly those of one-at-a-time decoding.
Batches are built whole before the first of their samples is handed out, at 0 workers the next
one while the loop has this one (and the helpers begin the one after); single samples are decoded
at most ``LOOKAHEAD`` draws ahead of the one handed out (a few MB of frames). So at 0 workers
decoding goes on during the training step, as in DataLoader workers.

Epochs and resume (``set_epoch``, ``state_dict``/``load_state_dict``): reader/epochs.py, shared
with the mixture. The state is the epoch and the number of samples this slot yielded. On load the pool order is re-simulated from span lengths (no reads), spans exhausted
before the stop are never read again, and the rest of the epoch comes out exactly: nothing
repeated, nothing dropped, provided seed, shuffle, pool size, episodes, rank/world size and
``num_workers`` are the same as when the state was taken (checked; a mismatch raises).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from itertools import islice
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch.utils.data import IterableDataset

from ..format import META_MEMBER, ManifestEpisode, depth_keys, depth_unit, frame_columns
from . import io_stats as S
from .batch import BatchSlots
from .build_threads import THREAD_NAME as HELPER_THREAD_NAME, BuildThreads, Run
from .depth import DepthQuantization, check_unit as check_depth_unit
from .episodes import EpisodeError, EpisodeLoader, LoadedEpisode, checked_member, episode_meta, member_request
from .meta import DatasetMeta
from .one_ahead import one_ahead
from .epoch_plan import Span, plan_spans, samples_per_rank
from .epochs import Resumable
from .pool import pool_order, stable_seed
from .sample import SampleBuilder
from .shared import in_worker
from .shm_ring import WorkerRing
from .storage import Store
from .video import MAIN_DECODE_STREAMS, EpisodeVideo, import_decoders_before_fork
from .window import delta_indices
from .world import World

#: Draws of the training process's single samples a helper thread may decode ahead of the one
#: being built (``_build_ahead``; the module docstring says what it was measured against).
LOOKAHEAD = 4

log = logging.getLogger(__name__)

#: Stats counter: video frames torchcodec decoded and returned (÷ frames emitted per camera ≈ decode
#: work per frame; 1 when each frame is decoded once).
FRAMES_DECODED = "frames_decoded"


class LeRobotShardDataset(Resumable, IterableDataset):
    """Streams a packed LeRobot dataset (``lerobot-wds pack`` output) as LeRobot sample dicts.

    ``url``: the packed directory or its ``manifest.json`` (local path or fsspec URL), or a
    ready :class:`Store`. Keyword arguments keep LeRobot's names and units: ``delta_timestamps``
    (seconds per key), ``tolerance_s`` (seconds), ``episodes`` (episode indices to keep).
    ``episode_pool_size`` episodes are interleaved per worker, drawn in rounds (their compressed
    bytes and decoders in memory; each episode's frames decoded once, in file order: see
    reader/pool.py and reader/video.py).
    ``rank``/``world_size`` default to torch.distributed, then ``RANK``/``WORLD_SIZE``, then a
    single process. The order depends on (seed, epoch): each new iteration is the next epoch, and
    :meth:`set_epoch` picks one; both reach DataLoader workers, ``persistent_workers=True``
    included (reader/epochs.py).
    ``drop_n_last_frames`` (lerobot's policy setting of that name) leaves the last frames of each
    episode out of every epoch (exactly the frames lerobot's ``EpisodeAwareSampler`` never samples;
    windows still see them), and ``len`` counts without them.
    ``return_uint8=True`` (lerobot's flag of that name) gives camera frames as uint8 in [0, 255]
    instead of float32 in [0, 1]: a quarter of the bytes through DataLoader workers; convert on
    the GPU (``frames / 255.0``: the float32 values, bit for bit on the CPU).
    Depth-map cameras (``info.is_depth_map``) come out as ``LeRobotDataset`` gives them: float32
    ``(1, H, W)`` in ``depth_output_unit`` (lerobot's option: ``"mm"``, whole millimetres, or
    ``"m"``), decoded on the CPU whatever ``video_decode_device`` says, never uint8 and without
    ``image_transforms``; ``meta.stats`` of depth features are in that unit too (reader/depth.py).
    ``on_error="skip"`` logs and counts unreadable episodes/samples instead of raising (see
    :meth:`io_stats`); episodes whose manifest entries are damaged are left out (logged and
    counted) before the epoch is planned. A rank that skips while reading yields fewer than
    ``len(self)`` samples, so under DDP keep the default ``"raise"`` or let the training loop
    tolerate uneven ranks.
    ``batch_size=N`` makes iteration yield batches of ``N`` samples (the last of each worker's
    epoch may be shorter), each equal to ``default_collate`` of the same samples in the same
    order: use ``DataLoader(ds, batch_size=None)``. Camera frames are then written once, straight
    into the batch (in shared memory inside a worker), instead of into each sample and again into
    the batch by the DataLoader's collate (reader/batch.py). ``len`` still counts samples; resume
    state still counts samples, at batch boundaries.
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
        episode_pool_size: int = 64,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        image_transforms: Callable[[torch.Tensor], torch.Tensor] | None = None,
        tolerance_s: float = 1e-4,
        video_decode_device: str = "cpu",
        storage_options: Mapping[str, Any] | None = None,
        on_error: str = "raise",
        rename: Mapping[str, str] | None = None,
        return_uint8: bool = False,
        drop_n_last_frames: int = 0,
        batch_size: int | None = None,
        depth_output_unit: str = "mm",
    ) -> None:
        super().__init__()
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error={on_error!r}; choose 'raise' or 'skip'")
        if drop_n_last_frames < 0:
            raise ValueError(f"drop_n_last_frames={drop_n_last_frames} must be >= 0")
        if episode_pool_size < 1:
            raise ValueError(f"episode_pool_size={episode_pool_size} must be >= 1")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1 (or None for single samples)")
        self.store = url if isinstance(url, Store) else Store(url, storage_options)
        # on_error="skip": an episode whose manifest entry is damaged is left out, logged and counted.
        bad: list[str] = []
        manifest = self.store.read_manifest(bad if on_error == "skip" else None)
        for err in bad:
            log.warning("skipping an episode the manifest lists unusably: %s", err)
            self.store.stats.add(S.SKIPPED)
        unchecked = sum(m.xxh3 is None for s in manifest.shards for e in s.episodes for m in e.members.values())
        if unchecked:
            log.warning("%s: %d members carry no checksum (packed with format version 1) and are read unchecked; "
                        "repack with `lerobot-wds pack` to have every read checked", self.store.url, unchecked)
        known = {e.episode_index for s in manifest.shards for e in s.episodes}
        if episodes is not None:
            missing = sorted(set(episodes) - known)
            if missing:
                raise ValueError(f"episodes {missing} are not in {self.store.url} (it has {len(known)}: {min(known)}..{max(known)})")
        self.meta = DatasetMeta(manifest, list(episodes) if episodes is not None else None, rename, self.store.url,
                                read_tasks=self._read_tasks)
        self.depth_output_unit = check_depth_unit(depth_output_unit)
        self.meta.rescale_depth_stats(depth_output_unit)
        sel = set(episodes) if episodes is not None else None
        # Per shard: (episode entry, ...) of selected episodes, and their lengths for the plan.
        self._entries = [[e for e in s.episodes if sel is None or e.episode_index in sel] for s in manifest.shards]
        #: The selected episode indices, None for all (``LeRobotDataset.episodes``).
        self.episodes: list[int] | None = list(episodes) if episodes is not None else None
        self.drop_n_last_frames = int(drop_n_last_frames)
        # Frames an epoch draws from, per episode: all but the last drop_n_last_frames (the frames
        # lerobot's EpisodeAwareSampler never samples); windows still see the whole episode.
        self._lengths = [[max(e.length - self.drop_n_last_frames, 0) for e in es] for es in self._entries]
        self._epoch_frames = sum(map(sum, self._lengths))
        if self.meta.total_frames and not self._epoch_frames:
            raise ValueError(
                f"{self.store.url}: drop_n_last_frames={drop_n_last_frames} leaves no frames (the longest "
                f"selected episode has {max(e.length for es in self._entries for e in es)}); lower it"
            )
        self._shard_names = [s.name for s in manifest.shards]
        self.delta_timestamps = dict(delta_timestamps) if delta_timestamps else None
        # Frame offsets per key, in the names samples carry; the builder works in stored names.
        self.delta_indices = delta_indices(delta_timestamps, manifest.fps, tolerance_s, self.meta.features)
        stored = {new: old for old, new in self.meta.rename.items()}
        self._video_keys, self._image_keys = manifest.video_keys, manifest.image_keys
        self._frame_columns = frame_columns(manifest.features)
        depth = depth_keys(manifest.features)
        units = {k: depth_unit(manifest.features[k]) for k in depth}
        if any(u is None for u in units.values()):
            log.warning("%s: depth features %s record no depth_unit; their statistics, and their frames stored "
                        "as images, are left as stored, not converted to %r (as LeRobotDataset does)",
                        self.store.url, [k for k, u in units.items() if u is None], depth_output_unit)
        self._builder = SampleBuilder(
            self._video_keys, self._image_keys, self.meta.task_strings,
            {stored.get(k, k): d for k, d in self.delta_indices.items()}, image_transforms, return_uint8,
            manifest.image_sizes,
            depth_tables={k: DepthQuantization.of_feature(k, manifest.features[k]).table(depth_output_unit)
                          for k in depth if k in self._video_keys},
            image_depth={k: None if units[k] in (None, depth_output_unit) else units[k] == "m"
                         for k in depth if k in self._image_keys},
        )
        # Output renames, the padding masks of windowed keys included.
        self._rename = dict(self.meta.rename)
        self._rename.update({f"{old}_is_pad": f"{new}_is_pad" for old, new in self.meta.rename.items()})
        if self._video_keys or self._image_keys:
            import_decoders_before_fork()
        self.return_uint8 = return_uint8
        self.episode_pool_size = episode_pool_size
        self.shuffle = shuffle
        self.seed = seed
        self.world = World.detect(rank, world_size)
        self.video_decode_device = video_decode_device
        self.on_error = on_error
        #: Samples per yielded batch; None: single samples.
        self.batch_size = batch_size
        self._ring: WorkerRing | None = None
        self._init_epochs()
        self.skipped = len(bad)

    # --- lerobot's dataset contract -----------------------------------------------------------
    @property
    def num_frames(self) -> int:
        """Frames of the selected episodes (``LeRobotDataset.num_frames``)."""
        return self.meta.total_frames

    @property
    def num_episodes(self) -> int:
        """Selected episodes (``LeRobotDataset.num_episodes``)."""
        return self.meta.total_episodes

    def _read_tasks(self, rows: Sequence[ManifestEpisode]) -> list[list[str]]:
        """Each episode's task strings, from its ``meta.msgpack`` member (one small ranged read each),
        checked as the episode's other members are (tar header, checksum, episode and length)."""
        shard_of = {e.episode_index: s for s, es in zip(self._shard_names, self.meta.manifest.shards) for e in es.episodes}
        out = []
        for e in rows:
            request = member_request(shard_of[e.episode_index], e, META_MEMBER)
            data = checked_member(self.store.read_range(*request), e, META_MEMBER, request[0])
            out.append(list(episode_meta(data, e, request[0]).tasks))
        return out

    # --- sizes and epochs -------------------------------------------------------------------
    def __len__(self) -> int:
        """Samples this rank yields per epoch: the frames an epoch draws from (all frames but the
        last ``drop_n_last_frames`` of each episode) // world_size, the same on every rank."""
        return samples_per_rank(self._epoch_frames, self.world.world_size)

    def _epoch_samples(self) -> int:
        return self._epoch_frames

    def _config(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "shuffle": self.shuffle, "episode_pool_size": self.episode_pool_size,
            "world_size": self.world.world_size, "total_frames": self.meta.total_frames,
            "drop_n_last_frames": self.drop_n_last_frames,
        }

    def _layout(self) -> str:
        """Fingerprint of what the order is planned from: shard names and, per shard, the selected
        episodes and their lengths (another ``--shard-size`` or another pack changes it)."""
        rows = [[name, [[e.episode_index, e.length] for e in es]] for name, es in zip(self._shard_names, self._entries)]
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]

    # --- iteration --------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Start an iteration of the next epoch (see reader/epochs.py)."""
        world = World.detect(self.world.rank, self.world.world_size)
        epoch, skip, _ = self._begin(world)
        if self.batch_size is None:
            return self._run(world, epoch, skip)
        ahead = self._builds_ahead()
        slots = self._batch_slots(keep=3 if ahead else 2)
        if not ahead:
            return slots.batches(self._run(world, epoch, skip, slots))
        drawn = [skip]  # the builder thread's count; state_dict() gets it as each batch is handed over
        built = slots.batches(self._run(world, epoch, skip, slots, lambda n: drawn.__setitem__(0, n)))
        return one_ahead(built, lambda: drawn[0], self._count)

    def _builds_ahead(self) -> bool:
        """Whether batches are built one ahead of the loop, on a thread of their own (reader/one_ahead.py):
        in the training process, when frames are decoded on its CPU."""
        return not in_worker() and self.video_decode_device == "cpu" and bool(self._video_keys or self._image_keys)

    def _count(self, drawn: int) -> None:
        """Record that this slot's iteration has taken ``drawn`` draws of its epoch (state_dict's count)."""
        self._yielded = drawn

    def _batch_slots(self, keep: int) -> BatchSlots:
        """The rows batches are built in: the frames of every camera whose size the dataset states,
        when frames are decoded on the CPU and no ``image_transforms`` may change their shape
        (otherwise those samples are built and collated as single samples are); ``keep``: sets of
        rows of handed-out batches kept for reuse."""
        sizes = self.meta.manifest.video_sizes
        direct = self.video_decode_device == "cpu" and self._builder.image_transforms is None
        shapes = {}
        for key in self._video_keys if direct else ():
            if key in sizes and key not in self._builder.depth_tables:  # depth maps: float32 (1, H, W), collated
                width, height = sizes[key]
                window = self._builder.deltas.get(key)
                shapes[key] = ((len(window),) if window is not None else ()) + (3, height, width)
        dtype = torch.uint8 if self.return_uint8 else torch.float32
        if in_worker() and self._ring is None:
            self._ring = WorkerRing()  # this worker's, kept across epochs (persistent workers)
        return BatchSlots(self.batch_size, shapes, dtype, self._ring if in_worker() else None, self._rename,
                          self.store.stats, keep)

    def _run(self, world: World, epoch: int, skip: int, slots: BatchSlots | None = None,
             count: Callable[[int], None] | None = None) -> Iterator[dict[str, Any]]:
        """This slot's samples of ``epoch`` after the first ``skip`` (in batches with ``slots``);
        ``count`` is told the draws taken so far after each (default: :meth:`_count`)."""
        spans = plan_spans(self._lengths, self.seed, epoch, world, self.shuffle, self.episode_pool_size)
        if not spans and self._epoch_frames:
            log.warning(
                "rank %d worker %d of %d has no frames to yield: %d frames are split over %d ranks × "
                "%d workers; use fewer DataLoader workers", world.rank, world.worker, world.num_workers,
                self._epoch_frames, world.world_size, world.num_workers,
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
        yield from self._emit(spans, todo, order, slots, skip, count or self._count)

    def _emit(self, spans: list[Span], todo: list[int], order: Iterator[tuple[int, int, bool]],
              slots: BatchSlots | None, drawn: int, count: Callable[[int], None]) -> Iterator[dict]:
        stats = self.store.stats
        where = [(self._shard_names[s.shard], self._entries[s.shard][s.position]) for s in spans]
        loader = EpisodeLoader(self.store, where, todo, self._video_keys, self._image_keys, self.on_error,
                               self._frame_columns)
        reach = self._builder.video_reach()
        sizes = self.meta.manifest.video_sizes
        videos: dict[int, EpisodeVideo] = {}
        timed = bool(self._video_keys or self._image_keys)  # decode seconds, when there is decoding
        # In DataLoader workers: planar frames (collate then copies), one sample at a time (the
        # workers are the parallelism); in the training process: torchcodec's views (collate's
        # threads transpose them faster) and MAIN_DECODE_STREAMS samples decoded at once (video.py).
        # Batches built here: torchcodec's views, deinterleaved straight into the batch (batch.py).
        # The shared decoder's frames are planar everywhere (shared_decoder.PlanarFrame).
        worker = in_worker()
        planar = worker and not (slots and slots.shapes)
        streams = 1 if worker or not self._video_keys or self.video_decode_device != "cpu" else MAIN_DECODE_STREAMS
        threads = BuildThreads(streams - 1, self._build_into) if slots is not None else None
        ahead = (ThreadPoolExecutor(streams - 1, thread_name_prefix=HELPER_THREAD_NAME)
                 if streams > 1 and slots is None else None)

        def video_of(p: int, ep: LoadedEpisode | None) -> EpisodeVideo | None:
            if not self._video_keys or ep is None:  # no cameras, or the episode was skipped
                return None
            if p not in videos:
                videos[p] = EpisodeVideo(ep, self.video_decode_device, reach, planar=planar, sizes=sizes,
                                         depth=self._builder.depth_tables)
            return videos[p]

        def built_in_batches() -> Iterator[tuple[tuple[int, int, bool], dict | None]]:
            # With helpers, the next run is queued before this one is collected, so that they build it
            # while this thread hands this batch over; not where a skipped sample moves later rows.
            ahead_runs = 1 if streams > 1 and self.on_error == "raise" else 0
            queued: deque[tuple[list[tuple[int, int, bool]], Run]] = deque()
            failed = None
            for run in batch_runs(order, slots):
                try:
                    eps = [loader.get(p) for p, _, _ in run]
                except Exception as e:  # noqa: BLE001 - raised after the samples drawn before it
                    failed = e
                    break
                queued.append((run, self._queue_rows(run, eps, video_of, spans, threads, slots)))
                if len(queued) > ahead_runs:
                    yield from self._collect_rows(*queued.popleft(), spans, timed, threads, slots)
            while queued:
                yield from self._collect_rows(*queued.popleft(), spans, timed, threads, slots)
            if failed is not None:
                raise failed

        try:
            built = (built_in_batches() if slots is not None
                     else self._build_ahead(order, loader.get, video_of, spans, timed, ahead, LOOKAHEAD * (streams - 1)))
            for (p, _, done), item in built:
                if done:
                    loader.drop(p)
                    v = videos.pop(p, None)
                    if v is not None:
                        stats.add(FRAMES_DECODED, v.decoded)
                        v.close()
                if drawn % 32 == 0:
                    stats.observe(S.POOL_EPISODES, len(loader.loaded))
                drawn += 1
                count(drawn)
                if item is not None:
                    if self._rename:
                        item = {self._rename.get(k, k): v for k, v in item.items()}
                    yield item
        finally:
            try:
                if threads is not None:
                    threads.close()
                if ahead is not None:
                    ahead.shutdown(wait=True, cancel_futures=True)
                stats.flush()
            except (OSError, NameError, AttributeError):  # a generator closed at interpreter exit: modules may be gone
                pass

    def _build_ahead(self, order: Iterator[tuple[int, int, bool]], episode: Callable[[int], LoadedEpisode | None],
                     video_of: Callable, spans: list[Span], timed: bool, ahead: ThreadPoolExecutor | None,
                     lookahead: int) -> Iterator[tuple[tuple[int, int, bool], dict | None]]:
        """Single samples in draw order, each built on this thread. Up to ``lookahead`` later draws
        of other episodes wait in a queue: this thread decodes the first of them itself unless a
        helper has taken it, and each helper takes the last one no thread has taken, so the threads
        work from both ends and each decodes whenever it is free. Without helpers, one draw at a time."""
        if ahead is None:
            for draw in order:
                p, f, _ = draw
                ep = episode(p)
                yield draw, self._build(ep, video_of(p, ep), spans[p].start + f, timed)
            return
        queue: deque[_Pending] = deque()
        lock = threading.Lock()

        def take_last() -> None:
            with lock:
                job = next((j for j in reversed(queue) if not j.taken and j.episode is not None), None)
                if job is None:
                    return
                job.taken = True
            try:
                _predecode(job.video, job.frames)
            except BaseException as e:  # noqa: BLE001 - handed to the thread that builds the sample
                job.error = e
            finally:
                job.done.set()

        draws = iter(order)
        draw = next(draws, None)
        while draw is not None or queue:
            # Queue later draws while their episodes are not queued already (one thread at a time per episode).
            while draw is not None and len(queue) <= lookahead and all(j.draw[0] != draw[0] for j in queue):
                p, f, _ = draw
                ep = episode(p)
                job = _Pending(draw, ep, video_of(p, ep))
                if ep is not None:  # a skipped episode (on_error="skip") has nothing to decode
                    job.frames = self._builder.video_frames(ep, spans[p].start + f)
                with lock:
                    queue.append(job)
                if ep is not None:
                    ahead.submit(take_last)
                draw = next(draws, None)
            with lock:
                job = queue.popleft()
                mine = not job.taken
                job.taken = True
            if not mine:
                with self.store.stats.timer(S.DECODE_S):
                    job.done.wait()
                if job.error is not None:
                    raise job.error
            p, f, _ = job.draw
            yield job.draw, self._build(job.episode, job.video, spans[p].start + f, timed)

    def _queue_rows(self, run: list[tuple[int, int, bool]], eps: list[LoadedEpisode | None], video_of: Callable,
                    spans: list[Span], threads: BuildThreads, slots: BatchSlots) -> Run:
        """Queue the samples of a run of draws to be built into their rows of the batch, one group of
        draws per episode, longest first (reader/build_threads.py)."""
        rows = slots.rows(len(run))
        jobs: dict[int, list[tuple[int, tuple]]] = {}  # span -> its draws (j, (episode, video, frame, row))
        for j, ((p, f, _), ep) in enumerate(zip(run, eps)):
            jobs.setdefault(p, []).append((j, (ep, video_of(p, ep), spans[p].start + f, rows[j])))
        return threads.submit(sorted(jobs.items(), key=lambda kv: -len(kv[1])))

    def _collect_rows(self, run: list[tuple[int, int, bool]], queued: Run, spans: list[Span], timed: bool,
                      threads: BuildThreads, slots: BatchSlots
                      ) -> Iterator[tuple[tuple[int, int, bool], dict | None]]:
        """The draws of a queued run and their samples (None where skipped), once built: this thread
        builds its groups too (and a later run's, once this one's are all taken)."""
        with self.store.stats.timer(S.DECODE_S) if timed else nullcontext():
            results = threads.finish(queued)
        built: list[dict | None] = []
        for j, (p, f, _) in enumerate(run):
            got = results[j]
            if isinstance(got, EpisodeError):
                got = self._skip_or_raise(got, spans[p].start + f)
            elif got is None:
                self._count_skip(self.store.stats)  # episode skipped (on_error="skip")
            built.append(got)
        slots.close_gaps(built)
        return zip(run, built)

    def _build_into(self, item: tuple[LoadedEpisode | None, EpisodeVideo | None, int, dict]
                    ) -> dict | EpisodeError | None:
        """The sample of ``(episode, its video, frame, its rows of the batch)``, written into those rows;
        None for a skipped episode, the error for one that fails while building."""
        ep, video, frame, rows = item
        if ep is None:
            return None
        try:
            return self._builder.build(ep, video, frame, rows)
        except EpisodeError as e:
            return e

    def _build(self, ep: LoadedEpisode | None, video: EpisodeVideo | None, frame: int,
               timed: bool) -> dict[str, Any] | None:
        """The sample at episode-local ``frame``; None when it fails (or its episode did) and
        ``on_error="skip"``."""
        if ep is None:  # episode skipped (on_error="skip")
            self._count_skip(self.store.stats)
            return None
        try:
            with self.store.stats.timer(S.DECODE_S) if timed else nullcontext():
                return self._builder.build(ep, video, frame)
        except EpisodeError as e:
            return self._skip_or_raise(e, frame)

    def _skip_or_raise(self, error: EpisodeError, frame: int) -> None:
        if self.on_error == "raise":
            raise error
        log.warning("skipping frame %d: %s", frame, error)
        self._count_skip(self.store.stats)
        return None

    def _count_skip(self, stats: S.Stats) -> None:
        self.skipped += 1
        stats.add(S.SKIPPED)

    def io_stats(self) -> dict[str, float]:
        """Fetch/decode/wait seconds, bytes, pool occupancy, retries and skips, summed over this
        process and its DataLoader workers (see reader/stats.py)."""
        return self.store.stats.snapshot()


def batch_runs(draws: Iterator[tuple[int, int, bool]], slots: BatchSlots) -> Iterator[list[tuple[int, int, bool]]]:
    """The draws in order, in runs that fill the rest of the batch being built (asked when the
    previous run's samples have been handed over, so skipped samples are made up for)."""
    while run := list(islice(draws, slots.left())):
        yield run


class _Pending:
    """A draw waiting in :meth:`LeRobotShardDataset._build_ahead`'s queue: its episode (None when
    skipped: no helper takes it), the frames its sample reads, whether a thread has taken their
    decoding (``taken``), and when a helper is done."""

    __slots__ = ("draw", "episode", "video", "frames", "taken", "done", "error")

    def __init__(self, draw: tuple[int, int, bool], episode: LoadedEpisode | None, video: EpisodeVideo | None) -> None:
        self.draw, self.episode, self.video, self.taken = draw, episode, video, False
        self.frames: list[tuple[str, Any]] = []
        self.done = threading.Event()
        self.error: BaseException | None = None


def _predecode(video: EpisodeVideo, wanted: list[tuple[str, Any]]) -> None:
    """Decode a sample's frames ahead of its build (on a helper thread)."""
    try:
        for camera, idx in wanted:
            video.decode(camera, idx)
    except EpisodeError:
        pass  # the build decodes the rest itself and fails (or skips) at this very sample
