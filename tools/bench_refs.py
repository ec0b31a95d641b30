"""Reference measurements for tools/bench_read.py: what the reader is compared against.

- ``run_bare``: a bare torchcodec loop decoding the same frames in the same order from the same
  in-memory clips, one process per DataLoader worker (or each needed frame once, in file order:
  the sequential decode limit);
- ``transport_only``: a DataLoader moving premade samples of the same shapes (float32 frames);
- ``mixing``: distinct episodes per batch against uniform draws over the pool;
- ``PeakRSS``: memory of the process tree.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time

import numpy as np

CAMS = ("observation.images.top", "observation.images.wrist")


def rss_parts(pid: int, shmem_base: int = 0) -> dict[str, int]:
    """Resident bytes of the process tree under ``pid`` (Linux /proc/<pid>/status), in three parts
    that add up to its RSS: ``"root"``, the root process's private anonymous memory and its
    file-backed pages (so the ~0.5 GB of libraries that forked DataLoader workers share with their
    parent count once); ``"children"``, the private anonymous memory of every process under it;
    ``"shared"``, the machine's shared memory (``Shmem`` of /proc/meminfo) above ``shmem_base``:
    the batches DataLoader workers hand to the training process live there, mapped by processes
    that may never touch them, so no process's RSS shows them. Anonymous pages a worker shares
    copy-on-write with its parent count in both, so the sum is an upper bound. (PSS from
    smaps_rollup would be exact but costs ~20 ms of CPU per read, enough to skew the measurement
    it is part of.)"""
    parts, todo, root = {"root": 0, "children": 0, "shared": max(0, shmem_bytes() - shmem_base)}, [pid], True
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    field = line.split(":", 1)[0]
                    if field == "RssAnon" or (root and field == "RssFile"):
                        parts["root" if root else "children"] += int(line.split()[1]) * 1024
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        root = False
    return parts


def shmem_bytes() -> int:
    """Shared memory in use on this machine (tmpfs and shared anonymous pages), in bytes."""
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("Shmem:"))


class PeakRSS:
    """Samples the RSS of this process tree (or of ``pid``'s) every 20 ms (shared memory counted
    from when it starts: :func:`rss_parts`); ``peak_parts`` at the highest sum, ``peak`` that sum in
    bytes."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid

    @property
    def peak(self) -> int:
        return sum(self.peak_parts.values())

    def __enter__(self) -> "PeakRSS":
        self.peak_parts, self._stop, self._shmem = {}, threading.Event(), shmem_bytes()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            parts = rss_parts(self.pid, self._shmem)
            if sum(parts.values()) > self.peak:
                self.peak_parts = parts
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def first_episodes(path: str, n: int, part: int = 0, parts: int = 1) -> list:
    """Episodes ``part``, ``part + parts``, ... of the first ``n`` of a packed dataset, in file
    order, loaded: every camera's clip in memory."""
    from lerobot_wds.reader.epoch_plan import plan_spans
    from lerobot_wds.reader.storage import Store
    from lerobot_wds.reader.world import World

    m = Store(path).read_manifest()
    spans = plan_spans([[e.length for e in s.episodes] for s in m.shards], 0, 0, World(0, 1, 0, 1), False)[:n]
    return list(_load_clips(path, spans, set(range(part, len(spans), parts))).values())


def _load_clips(path: str, spans, used):
    from lerobot_wds.reader.episodes import parse_episode, request_for, split_members
    from lerobot_wds.reader.storage import Store

    store = Store(path)
    m = store.read_manifest()
    names = [s.name for s in m.shards]
    eps = {}
    for p in sorted(used):
        s = spans[p]
        entry = m.shards[s.shard].episodes[s.position]
        blob = store.read_range(*request_for(names[s.shard], entry))
        eps[p] = parse_episode(split_members(blob, entry, names[s.shard]), entry, names[s.shard], m.video_keys)
    return eps


def _bare_worker(args) -> float:
    """Decode what the samples need (same order, in-memory clips); returns seconds spent."""
    path, spans, take, cam_windows, sequential, barrier = args
    import torch
    from torchcodec.decoders import VideoDecoder

    torch.set_num_threads(1)
    eps = _load_clips(path, spans, {p for p, _ in take})
    barrier.wait()
    t = time.perf_counter()
    if sequential:  # each needed frame once, in file order
        need: dict[tuple[int, str], set[int]] = {}
        for p, f in take:
            for cam in CAMS:
                L = eps[p].length
                need.setdefault((p, cam), set()).update(min(max(f + d, 0), L - 1) for d in cam_windows.get(cam, [0]))
        for (p, cam), frames in sorted(need.items()):
            lead = eps[p].meta.clips[cam].lead_in
            VideoDecoder(eps[p].clips[cam], num_ffmpeg_threads=1).get_frames_at(sorted(lead + i for i in frames))
    else:
        decoders: dict[tuple[int, str], VideoDecoder] = {}
        for p, f in take:
            for cam in CAMS:
                dec = decoders.get((p, cam))
                if dec is None:
                    dec = decoders[(p, cam)] = VideoDecoder(eps[p].clips[cam], num_ffmpeg_threads=1)
                L, lead = eps[p].length, eps[p].meta.clips[cam].lead_in
                dec.get_frames_at([lead + min(max(f + d, 0), L - 1) for d in cam_windows.get(cam, [0])])
    return time.perf_counter() - t


def run_bare(path: str, slots, cam_windows, sequential: bool) -> float:
    """samples/s of the bare decode loop, one process per worker, all started together, each
    decoder on one FFmpeg thread."""
    ctx = mp.get_context("fork")
    with ctx.Manager() as manager, ctx.Pool(len(slots)) as pool:
        barrier = manager.Barrier(len(slots))
        secs = pool.map(_bare_worker, [(path, sp, tk, cam_windows, sequential, barrier) for sp, tk in slots])
    return sum(len(tk) for _, tk in slots) / max(secs)


def mixing(batches: list[list[int]], slots, pool_size: int) -> float:
    """Mean distinct episodes per batch ÷ the same for uniform draws over the pool's unused frames."""
    rng = np.random.default_rng(0)
    ours = np.mean([len(set(b)) for b in batches if len(b) == 32])
    ref = []
    for spans, take in slots:
        remaining = np.array([s.length for s in spans])
        for i in range(0, len(take) - 31, 32):
            active = [p for p in range(len(spans)) if remaining[p] > 0][:pool_size]
            counts = rng.multivariate_hypergeometric(remaining[active], 32)
            ref.append(int((counts > 0).sum()))
            for p, _ in take[i : i + 32]:
                remaining[p] -= 1
    return float(ours / np.mean(ref))


def _FakeSamples(hw: tuple[int, int], top_frames: int, n: int):
    import torch
    from torch.utils.data import IterableDataset

    class FakeSamples(IterableDataset):
        def __iter__(self):
            u8 = torch.randint(0, 255, (3, *hw), dtype=torch.uint8)
            for i in range(n):
                top = torch.stack([u8] * top_frames) if top_frames > 1 else u8
                yield {CAMS[0]: (top / 255.0).to(torch.float32), CAMS[1]: (u8 / 255.0).to(torch.float32),
                       "index": torch.scalar_tensor(i, dtype=torch.int64), "action": torch.zeros(16, 6)}

    return FakeSamples()


def transport_only(hw: tuple[int, int], nw: int, deltas, samples: int) -> float:
    """samples/s of a DataLoader moving samples shaped like ours (float32 frames, same windows)
    that cost nothing to make: the ceiling that LeRobot's output format and DataLoader's
    collate + shared-memory transfer put on any reader, before decoding anything."""
    from torch.utils.data import DataLoader

    loader = DataLoader(_FakeSamples(hw, 2 if deltas else 1, samples + 64), batch_size=32, num_workers=nw)
    it = iter(loader)
    next(it)
    t, n = time.perf_counter(), 0
    for b in it:
        n += len(b["index"])
        if n >= samples:
            break
    return n / (time.perf_counter() - t)
