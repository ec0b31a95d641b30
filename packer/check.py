"""Audit a LeRobot v3.0 source without packing it (``lerobot-wds check SRC``), and the per-episode
checks ``pack`` runs at planning (missing or empty files, zero-length episodes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import pyarrow.parquet as pq

from .source import Source, SourceEpisode, SourceError, open_source


def stat_files(source: Source, episodes: Sequence[SourceEpisode]) -> dict[str, dict | None]:
    """``fs.info`` of every input file of ``episodes`` and of ``meta/`` (None: missing), root-relative."""
    rels = list(source.meta_files)
    for e in episodes:
        rels += [e.data_path] + [r.path for r in e.videos.values()]
    out: dict[str, dict | None] = {}
    for rel in dict.fromkeys(rels):
        try:
            out[rel] = source.fs.info(source.path(rel))
        except FileNotFoundError:
            out[rel] = None
    return out


def episode_defect(source: Source, e: SourceEpisode, infos: Mapping[str, Any]) -> str | None:
    """Why episode ``e`` cannot be packed, from its metadata and its files' stats (None: no defect found)."""
    if e.length < 1:
        return f"{source.path(e.meta_file)}: episode {e.episode_index}: length {e.length}; an episode needs ≥ 1 frame"
    for what, rel in [("data file", e.data_path)] + [(f"video {k}", r.path) for k, r in e.videos.items()]:
        info = infos.get(rel)
        if info is None:
            return f"episode {e.episode_index}: {what} {source.path(rel)} is missing from the source"
        if info.get("type", "file") == "file" and not info.get("size"):
            return f"episode {e.episode_index}: {what} {source.path(rel)} is empty (0 bytes)"
    return None


@dataclass
class CheckReport:
    """What ``check`` found: one line per defect, and what it looked at."""

    episodes: int = 0
    frames: int = 0
    files: int = 0
    defects: list[str] = field(default_factory=list)

    def summary(self) -> str:
        head = f"checked {self.episodes} episodes, {self.frames} frames, {self.files} files"
        return f"{head}: OK" if not self.defects else f"{head}: {len(self.defects)} defect(s)"


def check(src: str, revision: str | None = None, storage_options: Mapping[str, Any] | None = None) -> CheckReport:
    """Audit ``src``: metadata (as ``pack`` reads it), episode ranges tiling [0, total_frames), every
    referenced file present and non-empty, data rows no episode owns, videos no episode references."""
    report = CheckReport()
    try:
        source = open_source(src, revision, storage_options)
    except SourceError as e:
        report.defects.append(str(e))
        return report
    eps = source.episodes
    report.episodes, report.frames = len(eps), sum(e.length for e in eps)
    infos = stat_files(source, eps)
    report.files = len(infos)
    end = 0
    for e in sorted(eps, key=lambda e: e.dataset_from_index):
        if e.dataset_from_index != end:
            report.defects.append(f"{source.path(e.meta_file)}: episode {e.episode_index} starts at row "
                                  f"{e.dataset_from_index}, the episodes before it end at row {end} (a gap)")
        end = e.dataset_from_index + e.length
    total = source.info.get("total_frames")
    if total is not None and end != total:
        report.defects.append(f"{source.path('meta/info.json')}: total_frames {total}, meta/episodes covers rows 0–{end - 1}")
    report.defects += [d for e in eps if (d := episode_defect(source, e, infos)) is not None]
    owners = {}
    for e in eps:
        owners.setdefault(e.data_path, {})[e.episode_index] = e.length
    for rel, lengths in owners.items():
        if not infos.get(rel) or not infos[rel].get("size"):
            continue
        try:
            col = pq.read_table(source.path(rel), columns=["episode_index"], filesystem=source.fs)["episode_index"]
        except Exception as e:  # noqa: BLE001 - any unreadable parquet is a defect to report
            report.defects.append(f"data file {source.path(rel)}: cannot be read ({e})")
            continue
        counts: dict[int, int] = {}
        for i in col.to_pylist():
            counts[i] = counts.get(i, 0) + 1
        for i, n in sorted(counts.items()):
            if i not in lengths:
                report.defects.append(f"data file {source.path(rel)}: {n} orphan rows of episode {i}, "
                                      "which meta/episodes does not place in this file")
            elif n != lengths[i]:
                report.defects.append(f"data file {source.path(rel)}: episode {i} has {n} rows, meta/episodes says {lengths[i]}")
    referenced = {source.path(r.path) for e in eps for r in e.videos.values()}
    for path in sorted(source.fs.glob(source.path("videos/**/*.mp4"))):
        if path not in referenced:
            report.defects.append(f"video {path}: no episode references it (an orphan video)")
    return report
