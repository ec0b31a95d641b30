"""LeRobot v3.0 metadata → episode records, from a local root or any fsspec URL.

A source is opened once (``open_source``) and gives everything the packer plans with: the declared
features, tasks, stats and one :class:`SourceEpisode` per episode saying which data parquet holds
its rows and, per camera, which mp4 holds its frames from which timestamp (seconds). Only
``meta/`` is read here; data and video files are fetched later, and only for selected episodes.

Hub datasets are read through huggingface_hub's ``HfFileSystem``: ``hf://datasets/<repo_id>``
(the revision is appended as ``@<revision>``), or a bare ``<owner>/<name>`` that is not a local path.
"""

from __future__ import annotations

import logging
import math
import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import LeRobotWdsError
from ..format import parse_json
from .hub import source_storage_options

log = logging.getLogger(__name__)

SUPPORTED_CODEBASE = "v3.0"


class SourceError(LeRobotWdsError, ValueError):
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
    #: The ``meta/episodes`` file (root-relative) that lists this episode.
    meta_file: str = ""


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
    #: Root-relative ``meta/`` files read to open the source (part of the pack's source fingerprint).
    meta_files: tuple[str, ...] = ()

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


def _seconds(row: Mapping[str, Any], column: str) -> float:
    """A timestamp of a ``meta/episodes`` row: a finite, non-negative number of seconds (ValueError
    naming the column otherwise)."""
    v = float(row[column])
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{column!r} is {v}, not a time in the video")
    return v


def inside_root(rel: str, where: str) -> str:
    """``rel``, a file path made from ``meta/info.json``'s ``data_path`` or ``video_path``, when it
    stays inside the dataset root (relative, no ``..``, no URL); a SourceError naming ``where``
    otherwise: nothing a dataset's metadata names is read from outside it. Checked on the path as
    written, not resolved: a Hub cache snapshot's files are links into its blob store."""
    if posixpath.isabs(rel) or "\\" in rel or "://" in rel or ".." in rel.split("/"):
        raise SourceError(f"{where}: path {rel!r} leaves the dataset root (meta/info.json's data_path / video_path "
                          "and meta/episodes' chunk and file indices make it); a LeRobot dataset's files are inside it")
    return rel


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
        return parse_json(fs.cat_file(path))  # one GET on HTTP/Hub, where open+read costs a HEAD too
    except FileNotFoundError as e:
        raise SourceError(f"{path}: missing; is this a LeRobot v3.0 dataset root?") from e
    except ValueError as e:  # parse_json: every way it fails to parse
        raise SourceError(f"{path}: not valid JSON ({e}); the file is damaged") from e


def _check_info(info: Any, path: str) -> None:
    """The ``meta/info.json`` keys the packer relies on are there and well-formed."""
    if not isinstance(info, dict):
        raise SourceError(f"{path}: expected a JSON object, got {type(info).__name__}")
    features = info.get("features")
    if not isinstance(features, dict) or not features or not all(isinstance(f, dict) for f in features.values()):
        raise SourceError(f"{path}: no 'features' (a mapping of feature name to its dtype and shape); "
                          "every LeRobot v3.0 info.json declares them")
    fps = info.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0 or fps != int(fps):
        raise SourceError(f"{path}: fps {fps!r}; expected a positive whole number of frames per second")
    needed = ["data_path"] + (["video_path"] if any(f.get("dtype") == "video" for f in features.values()) else [])
    missing = [k for k in needed if not isinstance(info.get(k), str)]
    if missing:
        raise SourceError(f"{path}: missing {', '.join(missing)} (the file name templates of data and videos)")


def _text(value: Any, where: str) -> str:
    """A task string, UTF-8 validated (a binary parquet column gives bytes)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SourceError(f"{where}: task {value[:40]!r} is not UTF-8 text ({e})") from e
    raise SourceError(f"{where}: task {value!r} is not text")


def open_source(src: str, revision: str | None = None, storage_options: Mapping[str, Any] | None = None) -> Source:
    """Read ``meta/`` of a LeRobot v3.0 dataset and return its episodes, validated."""
    url, repo_id = resolve_url(src, revision)
    fs, root = fsspec.core.url_to_fs(url, **source_storage_options(url, storage_options))
    root = root.rstrip("/")
    p = lambda rel: f"{root}/{rel}" if root else rel  # noqa: E731
    info = _read_json(fs, p("meta/info.json"))
    if not isinstance(info, dict):
        _check_info(info, p("meta/info.json"))
    version = info.get("codebase_version")
    if version != SUPPORTED_CODEBASE:
        raise SourceError(
            f"{p('meta/info.json')}: codebase_version {version!r}; lerobot-wds packs {SUPPORTED_CODEBASE} only. "
            "Convert it first with lerobot's convert_dataset_v21_to_v30 script."
        )
    _check_info(info, p("meta/info.json"))
    meta_files = ["meta/info.json", "meta/tasks.parquet"]
    if fs.exists(p("meta/stats.json")):
        stats = _read_json(fs, p("meta/stats.json"))
        meta_files.append("meta/stats.json")
        if not isinstance(stats, dict) or not all(isinstance(v, dict) for v in stats.values()):
            raise SourceError(f"{p('meta/stats.json')}: not an object of per-feature stats objects; the file is damaged")
    else:
        stats = {}
    tasks_path = p("meta/tasks.parquet")
    try:
        t = pq.read_table(tasks_path, filesystem=fs, columns=None).to_pylist()
    except FileNotFoundError as e:
        raise SourceError(f"{tasks_path}: missing; every v3.0 dataset has meta/tasks.parquet") from e
    except (pa.ArrowException, OSError) as e:
        raise SourceError(f"{tasks_path}: cannot be read ({e}); the file is damaged") from e
    try:
        tasks = {int(r["task_index"]): _text(r.get("task", r.get("__index_level_0__")),
                                             f"{tasks_path}: task_index {r['task_index']}") for r in t}
    except (KeyError, TypeError, ValueError) as e:
        raise SourceError(f"{tasks_path}: a row without a whole task_index ({e!r}); the file is damaged") from e
    episodes, ep_files = _read_episodes(fs, root, info)
    rel = lambda path: path[len(root) + 1:] if root and path.startswith(root + "/") else path  # noqa: E731
    return Source(url=str(src), fs=fs, root=root, info=info, tasks=tasks, stats=stats, episodes=episodes,
                  repo_id=repo_id, revision=revision, meta_files=tuple(meta_files + [rel(f) for f in ep_files]))


def _read_episodes(fs: Any, root: str, info: Mapping[str, Any]) -> tuple[tuple[SourceEpisode, ...], list[str]]:
    """The episodes ``meta/episodes`` lists (sorted by index, each once, row ranges disjoint) and its files."""
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
        try:
            with fs.open(path, "rb") as f:
                pf = pq.ParquetFile(f, page_checksum_verification=True)
                table = pf.read(columns=[c for c in pf.schema_arrow.names if not c.startswith("stats/")])
        except (pa.ArrowException, OSError) as e:
            raise SourceError(f"{path}: cannot be read ({e}); the file is damaged") from e
        rel = path[len(root) + 1:] if root and path.startswith(root + "/") else path
        for row in table.to_pylist():
            ep = row.get("episode_index")
            try:
                videos = {
                    k: VideoRef(
                        path=inside_root(video_tpl.format(video_key=k, chunk_index=row[f"videos/{k}/chunk_index"],
                                                          file_index=row[f"videos/{k}/file_index"]),
                                         f"{path}: episode {ep}: video {k}"),
                        from_timestamp=_seconds(row, f"videos/{k}/from_timestamp"),
                        to_timestamp=_seconds(row, f"videos/{k}/to_timestamp"),
                    )
                    for k in video_keys
                }
                records.append(SourceEpisode(
                    episode_index=int(ep), length=int(row["length"]),
                    dataset_from_index=int(row["dataset_from_index"]),
                    tasks=tuple(_text(t, f"{path}: episode {ep}") for t in row["tasks"]),
                    data_path=inside_root(data_tpl.format(chunk_index=row["data/chunk_index"],
                                                          file_index=row["data/file_index"]), f"{path}: episode {ep}: data"),
                    videos=videos, meta_file=rel,
                ))
            except (KeyError, TypeError, AttributeError, ValueError) as e:
                raise SourceError(f"{path}: episode {ep}: missing or malformed column {e}") from e
    records.sort(key=lambda r: r.episode_index)
    for a, b in zip(records, records[1:]):
        if a.episode_index == b.episode_index:
            raise SourceError(f"{b.meta_file}: episode {b.episode_index} is listed twice (also in {a.meta_file}); "
                              "meta/episodes must list each episode once")
    by_row = sorted(records, key=lambda r: r.dataset_from_index)
    for a, b in zip(by_row, by_row[1:]):
        if b.dataset_from_index < a.dataset_from_index + a.length:
            raise SourceError(
                f"{b.meta_file}: episode {b.episode_index} (rows {b.dataset_from_index}–{b.dataset_from_index + b.length - 1}) "
                f"overlaps episode {a.episode_index} (rows {a.dataset_from_index}–{a.dataset_from_index + a.length - 1}); "
                "meta/episodes is inconsistent")
    return tuple(records), files
