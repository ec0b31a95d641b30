"""LeRobot v3.0 metadata → episode records, from a local root or any fsspec URL.

A source is opened once (``open_source``) and gives everything the packer plans with: the declared
features, tasks, stats and one :class:`SourceEpisode` per episode saying which data parquet holds
its rows and, per camera, which mp4 holds its frames from which timestamp (seconds). Only
``meta/`` is read here; data and video files are fetched later, and only for selected episodes.

Hub datasets are read through huggingface_hub's ``HfFileSystem``: ``hf://datasets/<repo_id>``
(the revision is appended as ``@<revision>``), or a bare ``<owner>/<name>`` that is not a local path.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import fsspec
import pyarrow.parquet as pq

from .hub import source_storage_options

log = logging.getLogger(__name__)

SUPPORTED_CODEBASE = "v3.0"


class SourceError(ValueError):
    """The LeRobot dataset cannot be packed; the message names the file and episode at fault."""


@dataclass(frozen=True)
class VideoRef:
    """Where one camera's frames of an episode sit: ``path`` (relative to the root), from/to in seconds."""

    path: str
    from_timestamp: float
    to_timestamp: float


@dataclass(frozen=True)
class SourceEpisode:
    """One episode as ``meta/episodes`` describes it; ``data_path`` and video paths are root-relative."""

    episode_index: int
    length: int
    dataset_from_index: int
    tasks: tuple[str, ...]
    data_path: str
    videos: Mapping[str, VideoRef] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """An opened LeRobot v3.0 dataset: filesystem, root and parsed metadata."""

    url: str
    fs: Any
    root: str
    info: Mapping[str, Any]
    tasks: Mapping[int, str]
    stats: Mapping[str, Any]
    episodes: tuple[SourceEpisode, ...]
    repo_id: str | None = None
    revision: str | None = None

    @property
    def fps(self) -> int:
        return int(self.info["fps"])

    @property
    def features(self) -> Mapping[str, Any]:
        return self.info["features"]

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") == "video"]

    @property
    def frame_columns(self) -> list[str]:
        """Parquet columns the frames member keeps: every declared feature that is not a video."""
        return [k for k, f in self.features.items() if f.get("dtype") != "video"]

    def path(self, rel: str) -> str:
        return f"{self.root.rstrip('/')}/{rel}" if self.root else rel

    def provenance(self) -> dict[str, Any]:
        """The manifest's ``source`` block."""
        d: dict[str, Any] = {"codebase_version": self.info.get("codebase_version")}
        d.update({"repo_id": self.repo_id} if self.repo_id else {"path": self.url})
        d["revision"] = self.revision
        return d


def is_local(fs: Any) -> bool:
    """True for fsspec's local filesystem (paths that ``open``/``os`` functions take as they are)."""
    protocol = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def resolve_url(src: str, revision: str | None) -> tuple[str, str | None]:
    """Map ``src`` to an fsspec URL; returns (url, repo_id or None)."""
    src = str(src)
    if src.startswith("hf://datasets/"):
        repo_id = src[len("hf://datasets/"):].split("@")[0].rstrip("/")
    elif "://" not in src and not os.path.exists(src) and re.fullmatch(r"[\w.-]+/[\w.-]+", src):
        repo_id = src
    else:
        return src, None
    return f"hf://datasets/{repo_id}" + (f"@{revision}" if revision else ""), repo_id


def parse_episodes(spec: str | None, available: Sequence[int]) -> list[int]:
    """Parse ``"0-99,250"`` (inclusive ranges) into sorted episode indices that must all exist."""
    if spec is None or spec.strip() == "":
        return sorted(available)
    have, chosen = set(available), set()
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise SourceError(f"--episodes {spec!r}: cannot parse {part!r}; use e.g. '0-99,250'")
        lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
        if hi < lo:
            raise SourceError(f"--episodes {spec!r}: range {part!r} is empty (end before start)")
        chosen.update(range(lo, hi + 1))
    missing = sorted(chosen - have)
    if missing:
        raise SourceError(
            f"--episodes {spec!r}: episodes {missing[:10]} are not in the dataset "
            f"(it has {len(have)} episodes, {min(have, default=0)}–{max(have, default=-1)})"
        )
    return sorted(chosen)


def _read_json(fs: Any, path: str) -> Any:
    try:
        return json.loads(fs.cat_file(path))  # one GET on HTTP/Hub, where open+read costs a HEAD too
    except FileNotFoundError as e:
        raise SourceError(f"{path}: missing; is this a LeRobot v3.0 dataset root?") from e


def open_source(src: str, revision: str | None = None, storage_options: Mapping[str, Any] | None = None) -> Source:
    """Read ``meta/`` of a LeRobot v3.0 dataset and return its episodes, validated."""
    url, repo_id = resolve_url(src, revision)
    fs, root = fsspec.core.url_to_fs(url, **source_storage_options(url, storage_options))
    root = root.rstrip("/")
    p = lambda rel: f"{root}/{rel}" if root else rel  # noqa: E731
    info = _read_json(fs, p("meta/info.json"))
    version = info.get("codebase_version")
    if version != SUPPORTED_CODEBASE:
        raise SourceError(
            f"{p('meta/info.json')}: codebase_version {version!r}; lerobot-wds packs {SUPPORTED_CODEBASE} only. "
            "Convert it first with lerobot's convert_dataset_v21_to_v30 script."
        )
    try:
        stats = json.loads(fs.cat_file(p("meta/stats.json")))
    except FileNotFoundError:
        stats = {}
    tasks_path = p("meta/tasks.parquet")
    try:
        t = pq.read_table(tasks_path, filesystem=fs, columns=None).to_pylist()
    except FileNotFoundError as e:
        raise SourceError(f"{tasks_path}: missing; every v3.0 dataset has meta/tasks.parquet") from e
    tasks = {int(r["task_index"]): str(r.get("task", r.get("__index_level_0__"))) for r in t}
    episodes = _read_episodes(fs, root, info)
    return Source(url=str(src), fs=fs, root=root, info=info, tasks=tasks, stats=stats,
                  episodes=episodes, repo_id=repo_id, revision=revision)


def _read_episodes(fs: Any, root: str, info: Mapping[str, Any]) -> tuple[SourceEpisode, ...]:
    ep_dir = f"{root}/meta/episodes" if root else "meta/episodes"
    files = sorted(fs.glob(f"{ep_dir}/chunk-*/file-*.parquet"))
    if not files:
        raise SourceError(f"{ep_dir}: no chunk-*/file-*.parquet; is this a LeRobot v3.0 dataset?")
    video_keys = [k for k, f in info["features"].items() if f.get("dtype") == "video"]
    data_tpl, video_tpl = info["data_path"], info.get("video_path")
    records = []
    for path in files:
        # One open, and only the non-stats columns' byte ranges: per-episode stats are most of this
        # file on a large dataset, and the packer takes stats from meta/stats.json.
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            table = pf.read(columns=[c for c in pf.schema_arrow.names if not c.startswith("stats/")])
        for row in table.to_pylist():
            ep = row.get("episode_index")
            try:
                videos = {
                    k: VideoRef(
                        path=video_tpl.format(video_key=k, chunk_index=row[f"videos/{k}/chunk_index"],
                                              file_index=row[f"videos/{k}/file_index"]),
                        from_timestamp=float(row[f"videos/{k}/from_timestamp"]),
                        to_timestamp=float(row[f"videos/{k}/to_timestamp"]),
                    )
                    for k in video_keys
                }
                records.append(SourceEpisode(
                    episode_index=int(ep), length=int(row["length"]),
                    dataset_from_index=int(row["dataset_from_index"]), tasks=tuple(row["tasks"]),
                    data_path=data_tpl.format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]),
                    videos=videos,
                ))
            except (KeyError, TypeError, AttributeError) as e:
                raise SourceError(f"{path}: episode {ep}: missing or malformed column {e}") from e
    records.sort(key=lambda r: r.episode_index)
    return tuple(records)
