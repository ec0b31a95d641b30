"""``.meta`` of a packed dataset: what lerobot code reads from ``LeRobotDatasetMetadata``.

Everything comes from ``manifest.json``, read once; no shard is opened. ``stats`` are numpy arrays
per feature and statistic, as ``LeRobotDatasetMetadata.stats`` holds them. ``tasks`` maps each task
string to its ``task_index`` (lerobot keeps a pandas DataFrame indexed the same way; pandas is not
a dependency here, so this is a plain dict and :meth:`DatasetMeta.get_task_index` does the lookup).

``rename`` (stored feature name → name the samples carry) applies here too: ``features``,
``stats``, ``video_keys``, ``image_keys`` and ``camera_keys`` use the new names, so a policy
normalises a renamed key with its own statistics. The manifest keeps the stored names.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..format import Manifest


def _stats_to_numpy(stats: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, per in stats.items():
        if isinstance(per, Mapping):
            out[key] = {name: np.asarray(v) for name, v in per.items()}
    return out


def check_rename(rename: Mapping[str, str] | None, features: Mapping[str, Any], where: str) -> dict[str, str]:
    """Validate ``rename`` (stored name → new name) against the stored ``features`` of ``where``.

    Raises ValueError naming the key when a stored name is not a feature (listing the features) or
    when two features would end up with the same name.
    """
    rename = dict(rename or {})
    for old, new in rename.items():
        if old not in features:
            raise ValueError(f"{where}: rename key {old!r} is not a feature; available: {', '.join(features)}")
        if not isinstance(new, str) or not new:
            raise ValueError(f"{where}: rename[{old!r}] = {new!r}; give a non-empty feature name")
    names = [rename.get(k, k) for k in features]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(
            f"{where}: rename {rename} gives two features the name(s) {clashes}; "
            "rename the other feature too or pick another name"
        )
    return rename


class DatasetMeta:
    """Metadata of a packed dataset (optionally restricted to selected ``episodes``), with feature
    names as the samples carry them (after ``rename``, see :func:`check_rename`)."""

    def __init__(
        self,
        manifest: Manifest,
        episodes: list[int] | None = None,
        rename: Mapping[str, str] | None = None,
        where: str = "dataset",
    ) -> None:
        self.manifest = manifest
        self.rename: dict[str, str] = check_rename(rename, manifest.features, where)
        new = self.rename.get
        self.fps: int = manifest.fps
        self.robot_type = manifest.robot_type
        self.features: dict[str, Any] = {new(k, k): f for k, f in manifest.features.items()}
        self.stats = {new(k, k): v for k, v in _stats_to_numpy(manifest.stats).items()}
        self.tasks: dict[str, int] = {task: idx for idx, task in sorted(manifest.tasks.items())}
        self.task_strings: dict[int, str] = dict(manifest.tasks)
        self.video_keys: list[str] = [new(k, k) for k in manifest.video_keys]
        self.image_keys: list[str] = [new(k, k) for k in manifest.image_keys]
        sel = set(episodes) if episodes is not None else None
        lengths = [e.length for s in manifest.shards for e in s.episodes if sel is None or e.episode_index in sel]
        self.total_episodes: int = len(lengths)
        self.total_frames: int = sum(lengths)
        self.total_tasks: int = len(self.tasks)

    @property
    def camera_keys(self) -> list[str]:
        """Video and image-dtype features, in feature order (as lerobot lists them)."""
        return [k for k, f in self.features.items() if f.get("dtype") in ("video", "image")]

    @property
    def shapes(self) -> dict[str, tuple]:
        return {k: tuple(f["shape"]) for k, f in self.features.items()}

    @property
    def names(self) -> dict[str, Any]:
        return {k: f.get("names") for k, f in self.features.items()}

    def get_task_index(self, task: str) -> int | None:
        """``task_index`` of a task string, or None when the dataset has no such task."""
        return self.tasks.get(task)

    def __repr__(self) -> str:
        return (
            f"DatasetMeta(fps={self.fps}, total_episodes={self.total_episodes}, "
            f"total_frames={self.total_frames}, cameras={self.camera_keys})"
        )
