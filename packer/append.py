"""``pack --append``: pack episodes not yet in OUT as new shards and publish a manifest naming all.

Old shards are never rewritten: the new manifest lists the old manifest's shard entries as they
were (same names, sizes, sha256) followed by the new shards, numbered on from the last one. The
manifest is replaced atomically, so a reader sees the old dataset or the new one; a reader that
opened the old manifest keeps reading the old shards, which are still there and unchanged.

What may change between packing and appending: which episodes are selected, the source's revision
(the point is to pick up episodes a dataset gained), its tasks and stats (the new source's are
taken). What may not: the source itself, shard size, re-encode options, format version, and the
features, fps and video encodings the old shards hold; mixing those would give a dataset whose
shards disagree, so it is refused.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from ..errors import LeRobotWdsError
from ..format import MANIFEST_NAME, FormatError, Manifest

from .source import Source

#: Fingerprint keys an append may change (see module docstring).
MAY_CHANGE = ("episodes", "append_after", "appended")


class AppendError(LeRobotWdsError, ValueError):
    """OUT cannot be appended to as asked; the message says why and what to do."""


def read_manifest(fs: Any, root: str) -> Manifest:
    """The manifest of the pack at ``root``; an AppendError when there is none to append to."""
    path = f"{root}/{MANIFEST_NAME}"
    try:
        return Manifest.from_json(fs.cat_file(path), where=path)
    except FileNotFoundError:
        raise AppendError(
            f"{path}: missing, so there is nothing to append to; run pack without --append "
            "(it also finishes an interrupted first pack)"
        ) from None
    except FormatError as e:
        raise AppendError(f"{path}: cannot be read ({e}); --append needs a readable manifest") from e


def packed_episodes(manifest: Manifest) -> list[int]:
    """Episode indices the manifest's shards hold, sorted."""
    return sorted(e.episode_index for s in manifest.shards for e in s.episodes)


def next_shard_index(manifest: Manifest) -> int:
    """The index the first appended shard takes: one past the highest ``shard-NNNNNN.tar`` listed."""
    nums = [int(m[1]) for s in manifest.shards if (m := re.fullmatch(r"shard-(\d+)\.tar", s.name))]
    return max(nums, default=-1) + 1


def check_fingerprint(old: dict, new: dict, root: str) -> None:
    """Refuse an append whose options differ from the pack's in anything but ``MAY_CHANGE``.

    The source block may differ in ``revision`` only.
    """
    keys = sorted(k for k in set(old) | set(new) if k not in MAY_CHANGE and k != "source" and old.get(k) != new.get(k))
    src_old = {k: v for k, v in (old.get("source") or {}).items() if k != "revision"}
    src_new = {k: v for k, v in (new.get("source") or {}).items() if k != "revision"}
    if src_old != src_new:
        keys.insert(0, "source")
    if keys:
        raise AppendError(
            f"{root}: was packed with different {', '.join(keys)}; --append must use the same source and "
            f"options (old: {json.dumps({k: old.get(k) for k in keys})})"
        )


def check_compatible(manifest: Manifest, source: Source, root: str) -> None:
    """Refuse a source whose schema differs from what the old shards hold."""
    problems = []
    if manifest.fps != source.fps:
        problems.append(f"fps {manifest.fps} → {source.fps}")
    if dict(manifest.features) != dict(source.features):
        changed = sorted(k for k in set(manifest.features) | set(source.features)
                         if manifest.features.get(k) != source.features.get(k))
        problems.append(f"features {changed}")
    for idx, task in manifest.tasks.items():
        if source.tasks.get(idx) != task:
            problems.append(f"task {idx} {task!r} → {source.tasks.get(idx)!r}")
    if problems:
        raise AppendError(
            f"{root}: the source no longer matches the packed shards ({'; '.join(problems)}); "
            "pack it into a new OUT instead of appending"
        )


def merge(old: Manifest, new: Manifest, root: str) -> Manifest:
    """``new`` with ``old``'s shards in front; the video encodings of both must agree."""
    for key, v in new.videos.items():
        if key in old.videos and old.videos[key] != v:
            raise AppendError(f"{root}: camera {key}: old shards hold {old.videos[key]}, new ones {v}; "
                              "pack into a new OUT instead of appending")
    videos = {**new.videos, **old.videos}
    packed = set(packed_episodes(new))
    skipped = {s.episode_index: s for s in old.skipped_episodes + new.skipped_episodes if s.episode_index not in packed}
    return Manifest(format_version=new.format_version, source=new.source, fps=new.fps, features=new.features,
                    tasks=new.tasks, stats=new.stats, robot_type=new.robot_type, videos=videos,
                    shards=tuple(old.shards) + tuple(new.shards),
                    skipped_episodes=tuple(skipped[i] for i in sorted(skipped)))


def to_append(selected: Sequence[int], manifest: Manifest) -> list[int]:
    """Of ``selected`` episode indices, those the manifest does not hold yet, sorted."""
    have = set(packed_episodes(manifest))
    return sorted(set(selected) - have)
