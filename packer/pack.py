"""Pack a LeRobot v3.0 dataset into lerobot-wds shards: plan, run shard tasks in parallel, manifest last.

Resuming: the plan is a pure function of the source and options, so a re-run recomputes the same
shards. A shard whose completion record exists and whose tar has the recorded size and sha256 is
kept; every other shard is written again. ``manifest.json`` is written last and atomically, so a
reader never sees a dataset whose shards are not all complete. An OUT packed with different options
(or another source) is refused rather than mixed.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import fsspec

from reader.format import FORMAT_VERSION, MANIFEST_NAME, EpisodeEntry, Manifest, MemberRef, ShardEntry, shard_name

from .plan import estimate_episode_bytes, plan_shards
from .progress import Progress
from .reencode import ReencodeSpec
from .shards import sha256_file
from .source import Source, open_source, parse_episodes
from .task import STATE_DIR, ShardTask, fsync_path, is_local, run_task, write_atomic

log = logging.getLogger(__name__)


class PackError(RuntimeError):
    """OUT cannot be (re)packed as asked; the message says why and what to do."""


@dataclass(frozen=True)
class PackOptions:
    """What to pack and how. ``shard_size`` is a target in bytes; ``workers`` processes write shards."""

    shard_size: int = 512_000_000
    workers: int = 1
    episodes: str | None = None
    revision: str | None = None
    reencode: ReencodeSpec | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.workers < 1 or self.shard_size < 1:
            raise ValueError(f"workers={self.workers}, shard_size={self.shard_size}: both must be ≥ 1")


def _estimate(source: Source, episodes: list) -> list[int]:
    """Per-episode size estimates from file sizes (one stat per distinct file)."""
    fs, sizes, rows, dur = source.fs, {}, {}, {}
    for e in episodes:
        rows[e.data_path] = rows.get(e.data_path, 0) + e.length
        for ref in e.videos.values():
            dur[ref.path] = max(dur.get(ref.path, 0.0), ref.to_timestamp)
    for rel in list(rows) + list(dur):
        try:
            sizes[rel] = fs.size(source.path(rel)) or 0
        except FileNotFoundError:
            users = [e.episode_index for e in episodes if rel == e.data_path or rel in {r.path for r in e.videos.values()}]
            raise PackError(f"episode {users[0]}: file {source.path(rel)} is missing from the source") from None
    return [
        estimate_episode_bytes(e.length, sizes[e.data_path], rows[e.data_path],
                               {k: (sizes[r.path], r.to_timestamp - r.from_timestamp, dur[r.path]) for k, r in e.videos.items()})
        for e in episodes
    ]


def _fingerprint(source: Source, selected: list[int], opts: PackOptions) -> dict:
    return {"source": source.provenance(), "episodes": selected, "shard_size": opts.shard_size,
            "reencode": opts.reencode.to_dict() if opts.reencode else None, "format_version": FORMAT_VERSION}


def _check_options(fs: Any, root: str, fp: dict) -> None:
    path = f"{root}/{STATE_DIR}/options.json"
    if fs.exists(path):
        old = json.loads(fs.cat_file(path))
        if old != fp:
            diff = sorted(k for k in set(old) | set(fp) if old.get(k) != fp.get(k))
            raise PackError(
                f"{root}: already holds a pack made with different {', '.join(diff)}; "
                "re-run with the same options to resume, or choose an empty OUT (or delete this one)"
            )
    elif fs.exists(f"{root}/{MANIFEST_NAME}"):
        raise PackError(f"{root}: holds a manifest.json but no pack state; choose an empty OUT")
    else:
        write_atomic(fs, path, json.dumps(fp, sort_keys=True, indent=1).encode())


def _completed(fs: Any, task: ShardTask) -> dict | None:
    """The task's completion record if its tar is there with the recorded size and sha256."""
    rec_path = task.out_path(f"{STATE_DIR}/{task.name}.json")
    try:
        record = json.loads(fs.cat_file(rec_path))
        with fs.open(task.out_path(task.name), "rb") as f:
            size, sha = sha256_file(f)
    except (FileNotFoundError, ValueError):
        return None
    s = record.get("shard", {})
    ok = record.get("fingerprint") == task.fingerprint and s.get("bytes") == size and s.get("sha256") == sha
    return record if ok else None


_WORKER_SOURCE: Source | None = None


def _init_worker(source: Source) -> None:
    global _WORKER_SOURCE
    _WORKER_SOURCE = source


def _run_in_worker(task: ShardTask) -> dict:
    if _WORKER_SOURCE is None:
        raise RuntimeError("worker process started without its source (pool initializer not run)")
    return run_task(_WORKER_SOURCE, task)


def pack(src: str, out: str, options: PackOptions = PackOptions()) -> Manifest:
    """Pack ``src`` (local root, fsspec URL or Hub repo) into ``out``; returns the manifest written."""
    source = open_source(src, options.revision, options.storage_options)
    selected = parse_episodes(options.episodes, [e.episode_index for e in source.episodes])
    chosen = set(selected)
    episodes = [e for e in source.episodes if e.episode_index in chosen]
    groups = plan_shards(_estimate(source, episodes), options.shard_size)
    fs, root = fsspec.core.url_to_fs(str(out), **dict(options.storage_options))
    root = root.rstrip("/")
    fs.makedirs(root, exist_ok=True)
    fp = _fingerprint(source, selected, options)
    fp_hash = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()
    _check_options(fs, root, fp)
    tasks = [ShardTask(i, shard_name(i), tuple(episodes[j] for j in g), fs, root, fp_hash, options.reencode)
             for i, g in enumerate(groups)]
    if is_local(fs):
        for stale in fs.glob(f"{root}/shard-*.tar.tmp-*"):
            fs.rm_file(stale)
    records: dict[int, dict] = {}
    todo = []
    for t in tasks:
        done = _completed(fs, t)
        if done is not None:
            records[t.index] = done
        else:
            todo.append(t)
    if records:
        log.info("%s: %d of %d shards already complete and verified; packing %d", out, len(records), len(tasks), len(todo))
    progress = Progress(len(episodes), enabled=options.progress)
    progress.skip(sum(len(tasks[i].episodes) for i in records))
    t0 = time.perf_counter()
    if options.workers > max(len(todo), 1):
        log.warning("--workers %d but only %d shard(s) to write: %d process(es) will be used; a smaller "
                    "--shard-size gives more shards to spread", options.workers, len(todo), max(len(todo), 1))
    if options.workers == 1 or len(todo) <= 1:
        for t in todo:
            records[t.index] = run_task(source, t, on_episode=lambda n: progress.update(1, n))
    else:
        # fork: workers inherit the imported modules and the opened source; spawn elsewhere.
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with cf.ProcessPoolExecutor(min(options.workers, len(todo)), mp_context=ctx,
                                    initializer=_init_worker, initargs=(source,)) as pool:
            futures = {pool.submit(_run_in_worker, t): t for t in todo}
            for fut in cf.as_completed(futures):
                t = futures[fut]
                records[t.index] = fut.result()
                progress.update(len(t.episodes), records[t.index]["shard"]["bytes"])
    progress.close()
    log.info("%s: packed %d shards in %.1f s", out, len(todo), time.perf_counter() - t0)
    if is_local(fs):
        for t in todo:  # shards on disk before the manifest that names them
            fsync_path(t.out_path(t.name))
    manifest = _manifest(source, [records[t.index] for t in tasks])
    write_atomic(fs, f"{root}/{MANIFEST_NAME}", manifest.to_json().encode())
    return manifest


def _manifest(source: Source, records: list[dict]) -> Manifest:
    videos: dict[str, dict] = {}
    for r in records:
        for k, v in r.get("videos", {}).items():
            videos.setdefault(k, v)
    shards = tuple(
        ShardEntry(name=r["shard"]["name"], bytes=r["shard"]["bytes"], sha256=r["shard"]["sha256"], episodes=tuple(
            EpisodeEntry(episode_index=e["episode_index"], length=e["length"], dataset_from_index=e["dataset_from_index"],
                         members={k: MemberRef(o, n) for k, (o, n) in e["members"].items()})
            for e in r["shard"]["episodes"]))
        for r in records
    )
    return Manifest(format_version=FORMAT_VERSION, source=source.provenance(), fps=source.fps,
                    features=dict(source.features), tasks=dict(source.tasks), stats=dict(source.stats),
                    robot_type=source.info.get("robot_type"), videos=videos, shards=shards)
