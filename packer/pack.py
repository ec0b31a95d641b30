"""Pack a LeRobot v3.0 dataset into lerobot-wds shards: plan, run shard tasks in parallel, manifest last.

Resuming: the plan is a pure function of the source and options, so a re-run recomputes the same
shards. A shard whose completion record exists and whose tar has the recorded size and sha256 is
kept; every other shard is written again. ``manifest.json`` is written last and atomically, so a
reader never sees a dataset whose shards are not all complete. An OUT packed with different options
(or another source) is refused rather than mixed. The same holds whichever executor runs the
tasks (``executor.py``: a local process pool or Ray), and for ``--append`` (``append.py``), whose
new shards are planned after the last one the manifest lists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import fsspec

from ..format import FORMAT_VERSION, MANIFEST_NAME, ManifestEpisode, Manifest, MemberRef, ManifestShard, shard_name

from . import append as appending
from .dry_run import describe_plan
from .executor import make_executor
from .shard_plan import estimate_episode_bytes, plan_shards
from .progress import Progress
from .reencode import ReencodeSpec
from .shards import sha256_file
from .source import Source, open_source, parse_episodes
from .task import STATE_DIR, ShardTask, is_local, write_atomic

log = logging.getLogger(__name__)


class PackError(RuntimeError):
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

    def __post_init__(self) -> None:
        if self.workers < 1 or self.shard_size < 1:
            raise ValueError(f"workers={self.workers}, shard_size={self.shard_size}: both must be ≥ 1")
        if self.executor not in ("local", "ray"):
            raise ValueError(f"executor {self.executor!r}: choose 'local' or 'ray'")
        if self.retries < 0:
            raise ValueError(f"retries={self.retries}: must be ≥ 0")


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


def _check_options(fs: Any, root: str, fp: dict, append: bool) -> None:
    path = f"{root}/{STATE_DIR}/options.json"
    if fs.exists(path):
        old = json.loads(fs.cat_file(path))
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
    elif fs.exists(f"{root}/{MANIFEST_NAME}"):
        raise PackError(f"{root}: holds a manifest.json but no pack state; choose an empty OUT")
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
    sizes = _estimate(source, episodes)
    groups = plan_shards(sizes, options.shard_size) if episodes else []
    fp_hash = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()
    tasks = tuple(ShardTask(first + i, shard_name(first + i), tuple(episodes[j] for j in g), fs, root, fp_hash,
                            options.reencode) for i, g in enumerate(groups))
    return PackPlan(source, fs, root, fp, tasks, tuple(sum(sizes[j] for j in g) for g in groups), previous)


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
    fs.makedirs(root, exist_ok=True)
    _check_options(fs, root, plan.fingerprint, options.append)
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

    def on_done(t: ShardTask, record: dict) -> None:
        records[t.index] = record
        progress.update(len(t.episodes) - reported[0], 0 if reported[0] else record["shard"]["bytes"])
        reported[0] = 0

    executor = make_executor(options.executor, options.workers, options.ray_address, options.retries)
    executor.run(source, todo, on_done, on_episode)
    progress.close()
    log.info("%s: packed %d shards in %.1f s", out, len(todo), time.perf_counter() - t0)
    # Each shard was fsynced by its task before its rename (packer.task.run_task), so the shards are
    # on disk before the manifest that names them.
    manifest = _manifest(source, [records[t.index] for t in tasks])
    if plan.previous is not None:
        manifest = appending.merge(plan.previous, manifest, root)
    write_atomic(fs, f"{root}/{MANIFEST_NAME}", manifest.to_json().encode())
    return manifest


def _manifest(source: Source, records: list[dict]) -> Manifest:
    videos: dict[str, dict] = {}
    for r in records:
        for k, v in r.get("videos", {}).items():
            videos.setdefault(k, v)
    shards = tuple(
        ManifestShard(name=r["shard"]["name"], bytes=r["shard"]["bytes"], sha256=r["shard"]["sha256"], episodes=tuple(
            ManifestEpisode(episode_index=e["episode_index"], length=e["length"], dataset_from_index=e["dataset_from_index"],
                         members={k: MemberRef(o, n) for k, (o, n) in e["members"].items()})
            for e in r["shard"]["episodes"]))
        for r in records
    )
    return Manifest(format_version=FORMAT_VERSION, source=source.provenance(), fps=source.fps,
                    features=dict(source.features), tasks=dict(source.tasks), stats=dict(source.stats),
                    robot_type=source.info.get("robot_type"), videos=videos, shards=shards)
