"""One shard task: source episodes → one finished tar at its final name, plus its completion record.

Runs in a worker process. The tar is written to a temporary file (``<name>.tmp-<pid>`` beside it
when OUT is local, a local temp file when OUT is remote) and only renamed/uploaded once complete,
so a killed run never leaves a file named ``shard-*.tar`` that is not whole; a local tar is fsynced
before its rename, so a published shard is also durable. The completion record
(``.lerobot-wds/<name>.json``, written after the tar) is what a re-run trusts, after checking the
tar's size and sha256 against it.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

import msgpack

from ..errors import LeRobotWdsError

from ..format import (FORMAT_VERSION, FRAMES_MEMBER, META_MEMBER, ManifestEpisode, ManifestShard, ShardEpisodeMeta,
                      SkippedEpisode, clip_member, depth_keys, episode_key)

from .clip import ClipCutter, ClipError, ClipRequest
from .frames import read_episode_tables, to_ipc_bytes
from .outdir import STATE_DIR, write_error
from .record import ShardRecord
from .reencode import ReencodeSpec, reencode_clip
from .shards import Data, ShardWriter
from .source import SourceEpisode, Source, SourceError, is_local

__all__ = ["STATE_DIR", "ShardTask", "run_task", "write_atomic", "write_shard"]


@dataclass(frozen=True)
class ShardTask:
    """Shard ``name`` holds ``episodes`` (in order) and goes to directory ``out_root`` on ``out_fs``."""

    index: int
    name: str
    episodes: tuple[SourceEpisode, ...]
    out_fs: Any
    out_root: str
    fingerprint: str
    reencode: ReencodeSpec | None = None
    #: Flush a local shard to disk (early writeback, fsync) before publishing it (PackOptions.durable).
    durable: bool = True
    #: Leave out an episode whose source is bad, recording why, instead of failing the task.
    skip_bad_episodes: bool = False

    def out_path(self, name: str) -> str:
        return f"{self.out_root}/{name}"


class RangeFile:
    """``seek``/``read`` over ``fs.cat_file`` ranges: a handle that shares no state with any other."""

    def __init__(self, fs: Any, path: str) -> None:
        self.fs, self.path, self.pos = fs, path, 0
        self.size = fs.size(path)

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset if whence == 1 else self.size + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        end = self.size if n is None or n < 0 else min(self.pos + n, self.size)
        data = self.fs.cat_file(self.path, start=self.pos, end=end) if end > self.pos else b""
        self.pos += len(data)
        return data

    def close(self) -> None:
        pass


class EarlyWriteback:
    """Binary file wrapper that asks the kernel to start writing the data out every ``every`` bytes.

    The shard's fsync before its rename then finds most of it already on disk: the disk writes
    while the packer keeps cutting clips, instead of all at the end (``POSIX_FADV_DONTNEED``
    starts writeback of the range and drops its pages once clean; where unsupported, a no-op).
    """

    def __init__(self, f: Any, where: str, every: int | None = 8 << 20) -> None:
        self.f, self.where, self.every, self.pos, self.mark = f, where, every, 0, 0

    def write(self, b: Any) -> int:
        try:
            n = self.f.write(b)
            self.pos += n
            if self.every and self.pos - self.mark >= self.every and hasattr(os, "posix_fadvise"):
                self.f.flush()
                os.posix_fadvise(self.f.fileno(), self.mark, self.pos - self.mark, os.POSIX_FADV_DONTNEED)
                self.mark = self.pos
        except OSError as e:  # a full disk: one line naming the shard, not a traceback from tar writing
            raise write_error(self.where, e) from e
        return n


def _episode_members(
    source: Source, ep: SourceEpisode, table: Any, cutters: dict[str, ClipCutter], spec: ReencodeSpec | None
) -> tuple[dict[str, Data], dict[str, dict]]:
    members: dict[str, Data] = {FRAMES_MEMBER: to_ipc_bytes(table)}
    clips, videos = {}, {}
    depth = set(depth_keys(source.features))
    used: dict[str, str] = {}  # mp4 path -> member cut from it: its buffers last until the next cut
    for key in source.video_keys:
        ref = ep.videos[key]
        if ref.path in used:  # two cameras in one file (not LeRobot's layout): keep the first clip
            members[used[ref.path]] = b"".join(members[used[ref.path]])
        used[ref.path] = clip_member(key)
        if ref.path not in cutters:
            where = source.path(ref.path)
            if is_local(source.fs):
                cutters[ref.path] = ClipCutter(where, where, source.fps)
            else:  # PyAV reads a file object; the cutter's own reads are independent ranged reads
                cutters[ref.path] = ClipCutter(source.fs.open(where, "rb"), where, source.fps,
                                               raw=RangeFile(source.fs, where))
        cutter = cutters[ref.path]
        data, info = cutter.cut_parts(ClipRequest(ep.episode_index, ref.from_timestamp, ep.length))
        if spec is not None and key not in depth:  # depth codes are 12-bit: an 8-bit re-encode would change them
            data, info = reencode_clip(b"".join(data), info, ep.length, source.fps, spec, f"episode {ep.episode_index}: video {cutter.where}")
        members[clip_member(key)], clips[key] = data, info
        videos[key] = {"codec": info.codec, "pix_fmt": "yuv420p" if info.reencoded else cutter.pix_fmt,
                       "width": info.width, "height": info.height, "reencoded": info.reencoded}
    meta = ShardEpisodeMeta(
        format_version=FORMAT_VERSION, episode_index=ep.episode_index, length=ep.length,
        dataset_from_index=ep.dataset_from_index, tasks=ep.tasks, clips=clips,
        source_from_timestamp={k: ep.videos[k].from_timestamp for k in source.video_keys},
    )
    members[META_MEMBER] = msgpack.packb(meta.to_dict(), use_bin_type=True)
    return members, videos


def _episode_table(source: Source, task: ShardTask, ep: SourceEpisode, tables: dict[str, dict]) -> Any:
    """The episode's rows; the task's episodes in one data file are read together (one open)."""
    if ep.data_path not in tables:
        same = [e for e in task.episodes if e.data_path == ep.data_path]
        try:
            tables.clear()
            tables[ep.data_path] = read_episode_tables(source, ep.data_path, same)
        except SourceError:
            if not task.skip_bad_episodes or len(same) == 1:
                raise
            tables[ep.data_path] = {}  # one bad episode in the file: read the others one by one
    rows = tables[ep.data_path]
    return rows[ep.episode_index] if ep.episode_index in rows else \
        read_episode_tables(source, ep.data_path, [ep])[ep.episode_index]


def write_shard(f: Any, source: Source, task: ShardTask, on_episode: Callable[[int], None] | None = None) -> ShardRecord:
    """Write the task's shard to the open file ``f``; returns its completion record.

    With ``task.skip_bad_episodes``, an episode whose source raises :class:`SourceError` or
    :class:`ClipError` is left out (nothing of it is written) and listed in the record's ``skipped``."""
    cutters: dict[str, ClipCutter] = {}
    tables: dict[str, dict] = {}
    videos: dict[str, dict] = {}
    entries, skipped = [], []
    try:
        with ShardWriter(f) as w:
            for ep in task.episodes:
                try:
                    members, vids = _episode_members(source, ep, _episode_table(source, task, ep, tables), cutters,
                                                     task.reencode)
                except (SourceError, ClipError) as e:
                    if not task.skip_bad_episodes:
                        raise
                    skipped.append(SkippedEpisode(ep.episode_index, str(e)))
                    continue
                videos = videos or vids
                refs = w.add_sample(episode_key(ep.episode_index), members)
                entries.append(ManifestEpisode(ep.episode_index, ep.length, ep.dataset_from_index, refs))
                members.clear()  # drop views of the cutters' buffers: closed cutters hand them on
                if on_episode:
                    on_episode(sum(r.size for r in refs.values()))
    finally:
        for c in cutters.values():
            c.close()
    return ShardRecord(task.fingerprint, videos, ManifestShard(task.name, w.size, w.sha256, tuple(entries)),
                       tuple(skipped))


def run_task(source: Source, task: ShardTask, on_episode: Callable[[int], None] | None = None) -> ShardRecord:
    """Write, then atomically publish, one shard and its completion record; returns the record.

    A write that fails (full disk, read-only or unwritable OUT) raises :class:`WriteError` naming
    the shard, and the temporary file is removed."""
    fs, final = task.out_fs, task.out_path(task.name)
    tmp = None
    try:
        if is_local(fs):
            tmp = f"{final}.tmp-{os.getpid()}"
            f = open(tmp, "wb")
        else:
            fd, tmp = tempfile.mkstemp(prefix=f"{task.name}.", suffix=f".tmp-{os.getpid()}")
            f = os.fdopen(fd, "wb")
        durable = task.durable and is_local(fs)
        with f:
            record = write_shard(EarlyWriteback(f, final, every=8 << 20 if durable else None), source, task, on_episode)
        if durable:
            fsync_path(tmp)  # durable before it is published (and before the manifest names it);
            # done here, in the worker, the flush overlaps the other workers' packing
        if is_local(fs):
            os.replace(tmp, final)
        else:
            fs.put_file(tmp, final)
    except OSError as e:
        if isinstance(e, LeRobotWdsError):
            raise
        raise write_error(final if tmp is None or is_local(fs) else tmp, e) from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
    # The record needs no fsync: a re-run trusts it only after checking the tar's size and sha256.
    write_atomic(fs, task.out_path(f"{STATE_DIR}/{task.name}.json"),
                 json.dumps(record.to_dict(), sort_keys=True).encode(), durable=False)
    return record


def fsync_path(path: str) -> None:
    """Flush a local file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(fs: Any, path: str, data: bytes, durable: bool = True) -> None:
    """Write a small file so that readers see either nothing or all of it (fsynced if ``durable``)."""
    if not is_local(fs):
        fs.pipe_file(path, data)
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise write_error(path, e) from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
