"""``.meta`` of a packed dataset: what lerobot code reads from ``LeRobotDatasetMetadata``.

What lerobot-train, policies, processors and its eval split read: ``features`` (info.json order,
shapes as tuples), ``fps``, ``robot_type``, ``stats``, ``tasks``, ``camera_keys``/``video_keys``/
``image_keys``/``depth_keys``, ``has_language_columns``, ``total_episodes``/``total_frames``/
``total_tasks``, ``shapes``/``names``, ``repo_id`` and an ``episodes`` table. Everything but the
table's ``tasks`` column comes from ``manifest.json``, read once; no shard is opened for it.
``stats`` are numpy arrays per feature and statistic, as ``LeRobotDatasetMetadata.stats`` holds
them. ``tasks`` maps each task string to its ``task_index`` (lerobot keeps a pandas DataFrame
indexed the same way; pandas is not a dependency here, so this is a dict whose ``.index`` lists
the task strings, and :meth:`DatasetMeta.get_task_index` does the lookup). ``total_episodes`` and
``total_frames`` count the selected episodes.

``rename`` (stored feature name → name the samples carry) applies here too: ``features``,
``stats``, ``video_keys``, ``image_keys`` and ``camera_keys`` use the new names, so a policy
normalises a renamed key with its own statistics. The manifest keeps the stored names.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..format import LANGUAGE_COLUMNS, Manifest, depth_keys, depth_unit


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


class Tasks(dict):
    """Task string → ``task_index``; ``.index`` lists the strings in ``task_index`` order, as
    lerobot's tasks DataFrame does."""

    @property
    def index(self) -> list[str]:
        return list(self)


class EpisodeTable:
    """lerobot's ``meta.episodes``, for the selected episodes in episode order: a column by name
    (``table["dataset_from_index"]``: one value per row) or a row by position (``table[0]``).

    Columns: ``episode_index``, ``length``, ``dataset_from_index``, ``dataset_to_index`` (from the
    manifest) and ``tasks`` (each episode's task strings, read from its ``meta.msgpack`` member on
    first use: one small ranged read per episode).
    """

    def __init__(self, rows: Sequence[Any], read_tasks: Callable[[], list[list[str]]]) -> None:
        self._columns: dict[str, list] = {
            "episode_index": [e.episode_index for e in rows],
            "length": [e.length for e in rows],
            "dataset_from_index": [e.dataset_from_index for e in rows],
            "dataset_to_index": [e.dataset_from_index + e.length for e in rows],
        }
        self._read_tasks = read_tasks

    @property
    def column_names(self) -> list[str]:
        return [*self._columns, "tasks"]

    def __len__(self) -> int:
        return len(self._columns["episode_index"])

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, str):
            if key == "tasks" and key not in self._columns:
                self._columns["tasks"] = self._read_tasks()
            if key not in self._columns:
                raise KeyError(f"episodes table has no column {key!r}; it has {self.column_names}")
            return self._columns[key]
        return {name: self[name][key] for name in self.column_names}


class DatasetMeta:
    """Metadata of a packed dataset (optionally restricted to selected ``episodes``), with feature
    names as the samples carry them (after ``rename``, see :func:`check_rename`)."""

    def __init__(
        self,
        manifest: Manifest,
        episodes: list[int] | None = None,
        rename: Mapping[str, str] | None = None,
        where: str = "dataset",
        read_tasks: Callable[[list[Any]], list[list[str]]] | None = None,
    ) -> None:
        self.manifest = manifest
        self.rename: dict[str, str] = check_rename(rename, manifest.features, where)
        new = self.rename.get
        self.fps: int = manifest.fps
        self.robot_type = manifest.robot_type
        #: A label for the dataset: the packed source's repo id or path (lerobot-wds train sets
        #: lerobot's ``--dataset.repo_id``).
        self.repo_id: str = str(manifest.source.get("repo_id") or manifest.source.get("path") or where)
        self.features: dict[str, Any] = {
            new(k, k): {**f, "shape": tuple(f["shape"])} if "shape" in f else dict(f)
            for k, f in manifest.features.items()
        }
        self.stats = {new(k, k): v for k, v in _stats_to_numpy(manifest.stats).items()}
        self.tasks = Tasks((task, idx) for idx, task in sorted(manifest.tasks.items()))
        self.task_strings: dict[int, str] = dict(manifest.tasks)
        self.video_keys: list[str] = [new(k, k) for k in manifest.video_keys]
        self.image_keys: list[str] = [new(k, k) for k in manifest.image_keys]
        sel = set(episodes) if episodes is not None else None
        rows = sorted((e for s in manifest.shards for e in s.episodes if sel is None or e.episode_index in sel),
                      key=lambda e: e.episode_index)
        self.total_episodes: int = len(rows)
        self.total_frames: int = sum(e.length for e in rows)
        self.total_tasks: int = len(self.tasks)
        self._rows = rows
        self._read_tasks = read_tasks
        self._episodes: EpisodeTable | None = None

    @property
    def episodes(self) -> EpisodeTable:
        """The selected episodes' table (see :class:`EpisodeTable`)."""
        if self._episodes is None:
            def tasks() -> list[list[str]]:
                if self._read_tasks is None:
                    raise ValueError("this meta has no shards to read episode tasks from")
                return self._read_tasks(self._rows)
            self._episodes = EpisodeTable(self._rows, tasks)
        return self._episodes

    @property
    def depth_keys(self) -> list[str]:
        """Camera features marked as depth maps (``info.is_depth_map``), as lerobot finds them."""
        return depth_keys(self.features)

    def rescale_depth_stats(self, unit: str) -> None:
        """Depth features' ``stats`` from the unit their frames were recorded in (their ``info``'s
        ``depth_unit``) to ``unit``, the one samples carry them in, as ``LeRobotDataset`` does
        (every statistic but ``count``; a feature that records no unit is left as it is, and
        lerobot then leaves its image frames as stored too)."""
        for key in self.depth_keys:
            stored = depth_unit(self.features[key])
            if stored is None or stored == unit or key not in self.stats:
                continue
            factor = 1000.0 if stored == "m" else 1.0 / 1000.0
            self.stats[key] = {name: v if name == "count" else v * factor for name, v in self.stats[key].items()}

    @property
    def has_language_columns(self) -> bool:
        """Whether any lerobot language column is a feature (lerobot-train then collates with
        ``lerobot_collate_fn``)."""
        return any(c in self.features for c in LANGUAGE_COLUMNS)

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
