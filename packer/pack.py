"""Pack a LeRobot v3.0 dataset into lerobot-wds shards: plan, run shard tasks in parallel, manifest last.

Resuming: the plan is a pure function of the source and options, so a re-run recomputes the same
shards. A shard whose completion record exists and whose tar has the recorded size and sha256 is
kept; every other shard is written again. ``manifest.json`` is written last and atomically, so a
reader never sees a dataset whose shards are not all complete. An OUT packed with different options
(or another source) is refused rather than mixed. The same holds whichever executor runs the
tasks (``executor.py``: a local process pool or Ray), and for ``--append`` (``append.py``), whose
new shards are planned after the last one the manifest lists.

A re-run also refuses when the source changed since the pack started (``fingerprint.py``: per input
file, size and mtime or ETag), when another pack holds OUT's lock, and when OUT holds shards or a
manifest that no pack state accounts for (``outdir.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import fsspec

from ..errors import LeRobotWdsError, UsageError
from ..format import FORMAT_VERSION, MANIFEST_NAME, Manifest, SkippedEpisode, parse_json, shard_name

from . import append as appending
from .check import episode_defect, stat_files
from .dry_run import describe_plan
from .executor import make_executor
from .fingerprint import changed_files, describe_changes, identity
from .outdir import OPTIONS_NAME, check_owned, pack_lock, write_error
from .record import ShardRecord
from .shard_plan import estimate_episode_bytes, plan_shards
from .progress import Progress
from .reencode import ReencodeSpec
from .shards import sha256_file
from .source import Source, SourceError, open_source, parse_episodes
from .task import STATE_DIR, ShardTask, is_local, write_atomic

SOURCE_STATE = "source.json"

log = logging.getLogger(__name__)


class PackError(LeRobotWdsError, RuntimeError):
    """OUT cannot be (re)packed as asked; the message says why and what to do."""


@dataclass(frozen=True)
class PackOptions:
    """What to pack and how. ``shard_size`` is a target in bytes; ``workers`` processes write shards
    with the ``local`` executor; ``ray`` runs them as tasks on the cluster at ``ray_address``."""

    shard_size: int = 512_000_000
    workers: int = 1
    episodes: str | None = None
    revision: str | None = None
    reencode: ReencodeSpec | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    progress: bool = True
    executor: str = "local"
    ray_address: str | None = None
    #: Times Ray runs a failed shard task again (raised errors and lost workers; not data errors).
    retries: int = 3
    append: bool = False
    #: Pack every good episode; list each bad one, with the error it raised, in the manifest.
    skip_bad_episodes: bool = False
    #: Flush each local shard to disk before publishing it. Only ``tools/bench_pack.py`` turns this
    #: off, to time packing like-for-like against a plain copy.
    durable: bool = True

    def __post_init__(self) -> None:
        if self.workers < 1 or self.shard_size < 1:
            raise UsageError(f"workers={self.workers}, shard_size={self.shard_size}: both must be ≥ 1")
        if self.executor not in ("local", "ray"):
            raise UsageError(f"executor {self.executor!r}: choose 'local' or 'ray'")
        if self.retries < 0:
            raise UsageError(f"retries={self.retries}: must be ≥ 0")


@dataclass(frozen=True)
class PackPlan:
    """Everything a pack decides before writing: the shards to write (new ones only on append)."""

    source: Source
    fs: Any
    root: str
    fingerprint: dict
    tasks: tuple[ShardTask, ...]
    #: Estimated bytes of each task's shard.
    estimates: tuple[int, ...]
    #: The manifest an append extends (None: a fresh pack).
    previous: Manifest | None = None
    #: Per input file (root-relative), its fingerprint (``fingerprint.identity``) when planned.
    files: dict = field(default_factory=dict)
    #: Selected episodes left out at planning (``skip_bad_episodes``): missing files, zero length.
    skipped: tuple[SkippedEpisode, ...] = ()


def _estimate(source: Source, episodes: list, infos: dict) -> list[int]:
    """Per-episode size estimates from the files' sizes (``infos``: one stat per distinct file)."""
    rows, dur = {}, {}
    for e in episodes:
        rows[e.data_path] = rows.get(e.data_path, 0) + e.length
        for ref in e.videos.values():
            dur[ref.path] = max(dur.get(ref.path, 0.0), ref.to_timestamp)
    size = lambda rel: infos[rel].get("size") or 0  # noqa: E731
    return [
        estimate_episode_bytes(e.length, size(e.data_path), rows[e.data_path],
                               {k: (size(r.path), r.to_timestamp - r.from_timestamp, dur[r.path]) for k, r in e.videos.items()})
        for e in episodes
    ]


def _fingerprint(source: Source, selected: list[int], opts: PackOptions) -> dict:
    return {"source": source.provenance(), "episodes": selected, "shard_size": opts.shard_size,
            "reencode": opts.reencode.to_dict() if opts.reencode else None, "format_version": FORMAT_VERSION}


def _check_options(fs: Any, root: str, fp: dict, append: bool) -> None:
    path = f"{root}/{STATE_DIR}/{OPTIONS_NAME}"
    if fs.exists(path):
        try:
            old = parse_json(fs.cat_file(path))
        except ValueError as e:
            raise PackError(f"{path}: damaged ({e}); delete OUT (or this file) and pack again") from e
        if not isinstance(old, dict):
            raise PackError(f"{path}: damaged (not a JSON object); delete OUT (or this file) and pack again")
        if append:
            appending.check_fingerprint(old, fp, root)
            fp = {**old, "source": fp["source"], "appended": True}
        elif old.get("appended"):
            raise PackError(f"{root}: was extended with --append; add --append to pack more episodes into it")
        elif old != fp:
            diff = sorted(k for k in set(old) | set(fp) if old.get(k) != fp.get(k))
            raise PackError(
                f"{root}: already holds a pack made with different {', '.join(diff)}; "
                "re-run with the same options to resume, or choose an empty OUT (or delete this one)"
            )
        if old == fp:
            return
    write_atomic(fs, path, json.dumps(fp, sort_keys=True, indent=1).encode())


def _check_source(fs: Any, root: str, run: str, files: dict) -> None:
    """Refuse a re-run of the pack ``run`` whose input files changed; record them on a new run."""
    path = f"{root}/{STATE_DIR}/{SOURCE_STATE}"
    try:
        old = parse_json(fs.cat_file(path))
    except (FileNotFoundError, ValueError):
        old = None
    if isinstance(old, dict) and old.get("run") == run:
        changed = changed_files(old.get("files", {}), files)
        if changed:
            raise PackError(describe_changes(root, changed))
        return
    write_atomic(fs, path, json.dumps({"run": run, "files": files}, sort_keys=True, indent=1).encode())


def _completed(fs: Any, task: ShardTask) -> ShardRecord | None:
    """The task's completion record if its tar is there with the recorded size and sha256."""
    rec_path = task.out_path(f"{STATE_DIR}/{task.name}.json")
    try:
        record = ShardRecord.from_dict(parse_json(fs.cat_file(rec_path)))
        with fs.open(task.out_path(task.name), "rb") as f:
            size, sha = sha256_file(f)
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    ok = record.fingerprint == task.fingerprint and record.shard.bytes == size and record.shard.sha256 == sha
    return record if ok else None


def plan_pack(src: str, out: str, options: PackOptions = PackOptions()) -> PackPlan:
    """Read the source's metadata (and, to append, OUT's manifest) and plan the shards; writes nothing."""
    source = open_source(src, options.revision, options.storage_options)
    selected = parse_episodes(options.episodes, [e.episode_index for e in source.episodes])
    fs, root = fsspec.core.url_to_fs(str(out), **dict(options.storage_options))
    root = root.rstrip("/")
    previous, first = None, 0
    fp = _fingerprint(source, selected, options)
    if options.append:
        previous = appending.read_manifest(fs, root)
        appending.check_compatible(previous, source, root)
        selected, first = appending.to_append(selected, previous), appending.next_shard_index(previous)
        fp = {**fp, "episodes": selected, "append_after": first}
    chosen = set(selected)
    episodes = [e for e in source.episodes if e.episode_index in chosen]
    infos = stat_files(source, episodes)
    skipped = []
    for e in list(episodes):
        defect = episode_defect(source, e, infos)
        if defect is None:
            continue
        if not options.skip_bad_episodes:
            raise SourceError(defect)
        skipped.append(SkippedEpisode(e.episode_index, defect))
        episodes.remove(e)
    sizes = _estimate(source, episodes, infos)
    groups = plan_shards(sizes, options.shard_size) if episodes else []
    fp_hash = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()
    tasks = tuple(ShardTask(first + i, shard_name(first + i), tuple(episodes[j] for j in g), fs, root, fp_hash,
                            options.reencode, options.durable, options.skip_bad_episodes) for i, g in enumerate(groups))
    files = {rel: identity(info) if info is not None else None for rel, info in infos.items()}
    return PackPlan(source, fs, root, fp, tasks, tuple(sum(sizes[j] for j in g) for g in groups), previous,
                    files, tuple(skipped))


def dry_run(src: str, out: str, options: PackOptions = PackOptions()) -> str:
    """What ``pack`` would write, as text (shards, estimated sizes, episode ranges); writes nothing."""
    plan = plan_pack(src, out, options)
    todo = [(t.name, [e.episode_index for e in t.episodes], n)
            for t, n in zip(plan.tasks, plan.estimates) if _completed(plan.fs, t) is None]
    kept_eps = sum(len(t.episodes) for t in plan.tasks) - sum(len(e) for _, e, _ in todo)
    kept = len(plan.tasks) - len(todo)
    if plan.previous is not None:
        kept, kept_eps = kept + len(plan.previous.shards), kept_eps + plan.previous.total_episodes
    return describe_plan(str(out), todo, skipped=kept_eps, kept=kept)


def pack(src: str, out: str, options: PackOptions = PackOptions()) -> Manifest:
    """Pack ``src`` (local root, fsspec URL or Hub repo) into ``out``; returns the manifest written."""
    plan = plan_pack(src, out, options)
    fs, root, source, tasks = plan.fs, plan.root, plan.source, plan.tasks
    if plan.previous is not None and not tasks:
        log.info("%s: every selected episode is packed already; nothing to append", out)
        return plan.previous
    try:
        fs.makedirs(root, exist_ok=True)
    except OSError as e:
        raise write_error(root, e) from e
    with pack_lock(fs, root):
        return _pack_locked(plan, options, out)


def _pack_locked(plan: PackPlan, options: PackOptions, out: str) -> Manifest:
    fs, root, source, tasks = plan.fs, plan.root, plan.source, plan.tasks
    check_owned(fs, root)
    _check_options(fs, root, plan.fingerprint, options.append)
    _check_source(fs, root, tasks[0].fingerprint if tasks else "", plan.files)
    if is_local(fs):  # only a killed run of this pack leaves these: the lock says none is running
        for stale in fs.glob(f"{root}/shard-*.tar.tmp-*") + fs.glob(f"{root}/{STATE_DIR}/*.tmp-*") \
                + fs.glob(f"{root}/{MANIFEST_NAME}.tmp-*"):
            fs.rm_file(stale)
    records: dict[int, ShardRecord] = {}
    todo = []
    for t in tasks:
        done = _completed(fs, t)
        if done is not None:
            records[t.index] = done
        else:
            todo.append(t)
    if records:
        log.info("%s: %d of %d shards already complete and verified; packing %d",
                 out, len(records), len(tasks), len(todo))
    progress = Progress(sum(len(t.episodes) for t in tasks), enabled=options.progress)
    progress.skip(sum(len(t.episodes) for t in tasks if t.index in records))
    t0 = time.perf_counter()
    if options.executor == "local" and options.workers > max(len(todo), 1):
        log.warning("--workers %d but only %d shard(s) to write: %d process(es) will be used; a smaller "
                    "--shard-size gives more shards to spread", options.workers, len(todo), max(len(todo), 1))
    reported = [0]  # episodes of the running task already counted (in-process runs report each)

    def on_episode(nbytes: int) -> None:
        reported[0] += 1
        progress.update(1, nbytes)

    def on_done(t: ShardTask, record: ShardRecord) -> None:
        records[t.index] = record
        progress.update(len(t.episodes) - reported[0], 0 if reported[0] else record.shard.bytes)
        reported[0] = 0

    executor = make_executor(options.executor, options.workers, options.ray_address, options.retries)
    executor.run(source, todo, on_done, on_episode)
    progress.close()
    log.info("%s: packed %d shards in %.1f s", out, len(todo), time.perf_counter() - t0)
    # Each shard was fsynced by its task before its rename (packer.task.run_task), so the shards are
    # on disk before the manifest that names them.
    manifest = _manifest(source, [records[t.index] for t in tasks], plan.skipped)
    for s in manifest.skipped_episodes:
        log.warning("skipped episode %d: %s", s.episode_index, s.reason)
    if plan.previous is not None:
        manifest = appending.merge(plan.previous, manifest, root)
    write_atomic(fs, f"{root}/{MANIFEST_NAME}", manifest.to_json().encode())
    return manifest


def _manifest(source: Source, records: list[ShardRecord], skipped: tuple[SkippedEpisode, ...] = ()) -> Manifest:
    videos: dict[str, dict] = {}
    for r in records:
        for k, v in r.videos.items():
            videos.setdefault(k, v)
    skipped = tuple(sorted(skipped + tuple(x for r in records for x in r.skipped), key=lambda x: x.episode_index))
    return Manifest(format_version=FORMAT_VERSION, source=source.provenance(), fps=source.fps,
                    features=dict(source.features), tasks=dict(source.tasks), stats=dict(source.stats),
                    robot_type=source.info.get("robot_type"), videos=videos,
                    shards=tuple(r.shard for r in records if r.shard.episodes),  # all skipped: not listed
                    skipped_episodes=skipped)
