"""The lerobot-wds shard format: names, versions and the manifest schema, in one place.

Both halves import this module: the packer writes what it describes and the reader refuses what it
does not understand. ``FORMAT.md`` at the repository root is the prose spec of the same thing; keep
the two in step and bump ``FORMAT_VERSION`` on any change a reader of the previous version would
misread.

A packed dataset is a directory (local or any fsspec URL) holding::

    manifest.json            written last, atomically: the only entry point of a reader
    shard-000000.tar         WebDataset tar shards of whole episodes
    shard-000001.tar
    ...

Each episode is one WebDataset sample with key ``episode_{episode_index:06d}`` and members
``<key>.meta.msgpack``, ``<key>.frames.arrow`` and one ``<key>.<video_key>.mp4`` per camera.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

import xxhash

from .errors import LeRobotWdsError

FORMAT_NAME = "lerobot-wds"
FORMAT_VERSION = 2
#: Versions this reader understands. Version 1 has no per-member checksums: read without checks.
READABLE_VERSIONS = (1, 2)

MANIFEST_NAME = "manifest.json"
SHARD_PATTERN = "shard-{index:06d}.tar"
EPISODE_KEY_PATTERN = "episode_{episode_index:06d}"

#: Member suffixes (after ``<key>.``).
META_MEMBER = "meta.msgpack"
FRAMES_MEMBER = "frames.arrow"
CLIP_SUFFIX = ".mp4"

#: What a manifest may name: shards exactly as ``shard_name`` writes them, member suffixes of the
#: form ``meta.msgpack`` / ``frames.arrow`` / ``<video_key>.mp4`` (no separators, no ``..``).
SHARD_NAME_RE = re.compile(r"shard-\d{6,}\.tar")
MEMBER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
#: The largest camera width or height a manifest or clip info may give (16K video); a reader sizes
#: its batch buffers by the manifest's before a clip confirms them.
MAX_VIDEO_SIDE = 1 << 14

#: Columns every frame table carries (LeRobot's bookkeeping features).
INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
#: Feature names lerobot reads as language annotations (``lerobot.datasets.language.LANGUAGE_COLUMNS``).
LANGUAGE_COLUMNS = ("language_persistent", "language_events")


class FormatError(LeRobotWdsError, ValueError):
    """A packed dataset, shard or member does not follow this format."""


def episode_key(episode_index: int) -> str:
    return EPISODE_KEY_PATTERN.format(episode_index=episode_index)


def shard_name(index: int) -> str:
    return SHARD_PATTERN.format(index=index)


def clip_member(video_key: str) -> str:
    """Member suffix of a camera's clip, e.g. ``observation.images.top.mp4``."""
    return f"{video_key}{CLIP_SUFFIX}"


def check_version(version: Any, where: str) -> None:
    """Raise a FormatError naming ``where`` when ``version`` is not one this reader reads."""
    if version not in READABLE_VERSIONS:
        lo, hi = min(READABLE_VERSIONS), max(READABLE_VERSIONS)
        raise FormatError(
            f"{where}: format version {version!r}; this reader reads {lo}–{hi}. "
            "Upgrade lerobot-wds or repack the dataset with this version."
        )


def parse_json(text: str | bytes) -> Any:
    """``json.loads``, with every way ``text`` fails to parse a ValueError: bad syntax, bad UTF-8 and a
    number past Python's digit limit already are; nesting deeper than Python's stack is json's
    RecursionError, raised here as a ValueError with the same message."""
    try:
        return json.loads(text)
    except RecursionError as e:
        raise ValueError(str(e)) from e


def whole_number(v: Any, low: int, high: float = float("inf")) -> bool:
    """Whether ``v`` is a whole number (a JSON or msgpack integer, not a bool) from ``low`` to ``high``."""
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


#: The fewest bytes of manifest text per JSON object or array that a reader parses: a packed
#: manifest has one per 53 bytes written compactly, per 87 as the packer writes it (an episode of two
#: cameras: its entry, its members and one list per member; ``tools/bench_manifest.py``).
MIN_BYTES_PER_CONTAINER = 32
#: JSON objects and arrays a manifest may hold beyond that, whatever its size: features and their
#: stats (an image's per-channel stats are nested lists, several to a number) are dense but few.
FREE_CONTAINERS = 100_000


@dataclass(frozen=True)
class ClipInfo:
    """Where an episode's frames sit inside its camera clip (stored in ``meta.msgpack``).

    Episode frame ``i`` is clip frame ``lead_in + i`` in presentation order. ``lead_in`` is the
    number of frames decoded before the episode's first frame (packets from the previous keyframe,
    kept so the clip starts on a keyframe without re-encoding); 0 when the episode starts on a
    keyframe or the clip was re-encoded. ``num_frames`` counts every frame in the clip.
    """

    lead_in: int
    num_frames: int
    reencoded: bool
    codec: str
    width: int
    height: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ClipInfo":
        """Raises TypeError/ValueError naming the field that is not of its type and range (a negative
        ``lead_in`` would have torchcodec count frames from the clip's end)."""
        if not isinstance(d, Mapping) or set(d) != {f.name for f in fields(cls)}:
            raise TypeError(f"clip info {d!r} does not have the fields {sorted(f.name for f in fields(cls))}")
        for name, low, high in (("lead_in", 0, 2**31), ("num_frames", 0, 2**31), ("width", 1, MAX_VIDEO_SIDE),
                                ("height", 1, MAX_VIDEO_SIDE)):
            v = d[name]
            if not whole_number(v, low, high):
                raise ValueError(f"clip info {name} {v!r} is not a whole number from {low} to {high}")
        if not isinstance(d["reencoded"], bool) or not isinstance(d["codec"], str):
            raise TypeError(f"clip info reencoded {d['reencoded']!r} / codec {d['codec']!r} are not a bool and a string")
        return cls(**d)

    def size_mismatch(self, size: tuple[int, int], dataset: tuple[int, int] | None) -> str | None:
        """Why a clip that decodes at ``size`` (width, height) is not what this clip info and the
        dataset (``dataset``: the manifest's ``videos`` entry, None when it has no size) say its
        frames are; None when they all agree. The reader and ``verify`` both check it."""
        said = (self.width, self.height)
        dataset = dataset or said
        if size == said == dataset:
            return None
        return (f"decodes at {size[0]}x{size[1]}, its metadata says {said[0]}x{said[1]}, "
                f"the dataset {dataset[0]}x{dataset[1]}")


@dataclass(frozen=True)
class ShardEpisodeMeta:
    """Contents of ``<key>.meta.msgpack``: what the reader needs about one episode beyond its frames."""

    format_version: int
    episode_index: int
    length: int
    dataset_from_index: int
    tasks: tuple[str, ...]
    clips: Mapping[str, ClipInfo]
    #: Source ``videos/<key>/from_timestamp`` per camera (seconds), kept for provenance.
    source_from_timestamp: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> "ShardEpisodeMeta":
        check_version(d.get("format_version"), where)
        try:
            tasks = d["tasks"]
            if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
                raise TypeError(f"tasks {tasks!r} is not a list of strings")
            return cls(
                format_version=int(d["format_version"]),
                episode_index=int(d["episode_index"]),
                length=int(d["length"]),
                dataset_from_index=int(d["dataset_from_index"]),
                tasks=tuple(tasks),
                clips={k: ClipInfo.from_dict(v) for k, v in d["clips"].items()},
                source_from_timestamp=dict(d.get("source_from_timestamp", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
            raise FormatError(f"{where}: malformed episode metadata ({e}); the shard is damaged or hostile, "
                              "repack it") from e


@dataclass(frozen=True, slots=True)
class MemberRef:
    """Byte range of one member's data inside its shard tar (header excluded), and the XXH3-64
    checksum of those bytes (16 hex digits; ``None`` in version-1 manifests, which have none)."""

    offset: int
    size: int
    xxh3: str | None = None

    def to_list(self) -> list[Any]:
        return [self.offset, self.size] if self.xxh3 is None else [self.offset, self.size, self.xxh3]

    @classmethod
    def from_list(cls, v: Any) -> "MemberRef":
        """``[offset, size]`` or ``[offset, size, xxh3]``; raises ValueError/TypeError otherwise."""
        if not isinstance(v, (list, tuple)) or len(v) not in (2, 3):
            raise ValueError(f"member entry {v!r} is not [offset, size, xxh3]")
        xxh3 = v[2] if len(v) == 3 else None
        if xxh3 is not None and not (isinstance(xxh3, str) and re.fullmatch(r"[0-9a-f]{16}", xxh3)):
            raise ValueError(f"member checksum {xxh3!r} is not 16 hex digits")
        return cls(int(v[0]), int(v[1]), xxh3)


#: The tar header block right before every member's data (names that need a pax header have it
#: before this block): what ties a manifest's byte range to the member it names.
TAR_HEADER = 512


def header_names(block: bytes | memoryview, name: str) -> bool:
    """Whether ``block``, the :data:`TAR_HEADER` bytes before a member's data, is the tar header of
    member ``name``: a ustar block whose name field holds ``name`` (for a name a ustar field cannot
    hold whole, non-ASCII or 100 bytes or more, whose full name is in a pax header, the magic only)."""
    b = bytes(block)
    if len(b) != TAR_HEADER or b[257:262] != b"ustar":
        return False
    raw = name.encode("utf-8", "surrogateescape")
    if not raw.isascii() or len(raw) >= 100:
        return True
    return b[:100].split(b"\0", 1)[0] == raw


def member_checksum(data: bytes | memoryview) -> str:
    """XXH3-64 of a member's bytes as 16 hex digits: what the manifest records and the reader checks."""
    return xxhash.xxh3_64_hexdigest(data)


def member_hasher() -> Any:
    """A streaming hasher (``update``, ``hexdigest``) giving :func:`member_checksum` of the bytes fed."""
    return xxhash.xxh3_64()


@dataclass(frozen=True, slots=True)
class ManifestEpisode:
    """One episode of a shard, as listed in the manifest."""

    episode_index: int
    length: int
    dataset_from_index: int
    #: Member suffix (``meta.msgpack``, ``frames.arrow``, ``<video_key>.mp4``) → byte range.
    members: Mapping[str, MemberRef]

    @property
    def span(self) -> tuple[int, int]:
        """Byte range covering all of this episode's members and their tar headers: (the first
        member's header, the last member's end), so every member's header can be checked."""
        start = min(m.offset for m in self.members.values()) - TAR_HEADER
        end = max(m.offset + m.size for m in self.members.values())
        return start, end

    def to_dict(self) -> dict[str, Any]:
        return {"episode_index": self.episode_index, "length": self.length, "dataset_from_index": self.dataset_from_index,
                "members": {k: m.to_list() for k, m in self.members.items()}}

    @classmethod
    def from_dict(cls, e: Mapping[str, Any]) -> "ManifestEpisode":
        """Raises KeyError/TypeError/ValueError on a malformed entry (the caller names the file)."""
        return cls(episode_index=int(e["episode_index"]), length=int(e["length"]),
                   dataset_from_index=int(e["dataset_from_index"]),
                   members={k: MemberRef.from_list(v) for k, v in e["members"].items()})


@dataclass(frozen=True)
class ManifestShard:
    """One shard as the manifest lists it: its name, size and sha256, and its episodes in order."""

    name: str
    bytes: int
    sha256: str
    episodes: tuple[ManifestEpisode, ...]

    @property
    def frames(self) -> int:
        return sum(e.length for e in self.episodes)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.bytes, "sha256": self.sha256, "frames": self.frames,
                "episodes": [e.to_dict() for e in self.episodes]}

    @classmethod
    def from_dict(cls, s: Mapping[str, Any]) -> "ManifestShard":
        """Raises KeyError/TypeError/ValueError on a malformed entry (the caller names the file)."""
        return cls(name=s["name"], bytes=int(s["bytes"]), sha256=s["sha256"],
                   episodes=tuple(ManifestEpisode.from_dict(e) for e in s["episodes"]))


@dataclass(frozen=True)
class SkippedEpisode:
    """A source episode ``pack --skip-bad-episodes`` left out, and why (the error it raised)."""

    episode_index: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"episode_index": self.episode_index, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SkippedEpisode":
        return cls(episode_index=int(d["episode_index"]), reason=str(d["reason"]))


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``: everything a reader needs without opening a shard."""

    format_version: int
    source: Mapping[str, Any]
    fps: int
    #: LeRobot's feature schema (``meta/info.json`` ``features``), minus columns left out.
    features: Mapping[str, Any]
    #: ``task_index`` → task string.
    tasks: Mapping[int, str]
    stats: Mapping[str, Any]
    robot_type: str | None
    #: Per camera: codec, pix_fmt, width, height, and whether clips were re-encoded.
    videos: Mapping[str, Any]
    shards: tuple[ManifestShard, ...]
    format: str = FORMAT_NAME
    #: Source episodes left out by ``pack --skip-bad-episodes`` (written only when there are any).
    skipped_episodes: tuple[SkippedEpisode, ...] = ()

    @property
    def total_episodes(self) -> int:
        return sum(len(s.episodes) for s in self.shards)

    @property
    def video_sizes(self) -> dict[str, tuple[int, int]]:
        """``(width, height)`` per camera, as its ``videos`` entry says (cameras without both left out)."""
        return {k: (int(v["width"]), int(v["height"])) for k, v in self.videos.items()
                if isinstance(v, Mapping) and "width" in v and "height" in v}

    @property
    def image_sizes(self) -> dict[str, tuple[int, int]]:
        """``(width, height)`` per image-dtype feature, from its shape and its ``names`` (images
        whose names do not say which dimension is the height and which the width left out)."""
        out = {}
        for k, f in self.features.items():
            names, shape = f.get("names") or [], f.get("shape") or []
            if f.get("dtype") == "image" and "height" in names and "width" in names and len(names) == len(shape):
                out[k] = (int(shape[names.index("width")]), int(shape[names.index("height")]))
        return out

    @property
    def total_frames(self) -> int:
        return sum(s.frames for s in self.shards)

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") == "video"]

    @property
    def image_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") == "image"]

    def to_json(self) -> str:
        """Deterministic JSON (sorted keys), so packing twice gives identical bytes."""
        d = {
            "format": self.format,
            "format_version": self.format_version,
            "source": self.source,
            "fps": self.fps,
            "robot_type": self.robot_type,
            "features": self.features,
            # JSON objects are written with sorted keys; this keeps info.json's feature order.
            "feature_order": list(self.features),
            "tasks": {str(k): v for k, v in sorted(self.tasks.items())},
            "stats": self.stats,
            "videos": self.videos,
            "total_episodes": self.total_episodes,
            "total_frames": self.total_frames,
            "shards": [s.to_dict() for s in self.shards],
        }
        if self.skipped_episodes:
            d["skipped_episodes"] = [s.to_dict() for s in self.skipped_episodes]
        return json.dumps(d, sort_keys=True, indent=1) + "\n"

    @classmethod
    def from_json(
        cls, text: str | bytes, where: str = MANIFEST_NAME, bad_episodes: list[str] | None = None
    ) -> "Manifest":
        """Parse and check a manifest (:func:`check_manifest`; ``bad_episodes``: see there).

        A text with more JSON objects and arrays than :data:`FREE_CONTAINERS` plus one per
        :data:`MIN_BYTES_PER_CONTAINER` bytes is refused before it is parsed: Python holds an empty
        ``{}`` or ``[]`` in 56 bytes or more, so a text of nothing else would parse into 25 times
        its size (``tools/bench_manifest.py``)."""
        brace, bracket = (b"{", b"[") if isinstance(text, bytes) else ("{", "[")
        containers = text.count(brace) + text.count(bracket)  # inside strings too: it only counts more
        if containers > FREE_CONTAINERS + len(text) // MIN_BYTES_PER_CONTAINER:
            raise FormatError(
                f"{where}: {containers:,} JSON objects and arrays in {len(text):,} bytes, more than one per "
                f"{MIN_BYTES_PER_CONTAINER} bytes (a manifest written by 'lerobot-wds pack' has one per 50 or more); "
                "the manifest is damaged or hostile, repack or restore it"
            )
        try:
            d = parse_json(text)
        except ValueError as e:
            raise FormatError(f"{where}: not valid JSON ({e})") from e
        if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
            raise FormatError(
                f"{where}: not a {FORMAT_NAME} manifest (format={d.get('format') if isinstance(d, dict) else None!r})"
            )
        check_version(d.get("format_version"), where)
        try:
            _check_fields(d)
            shards = tuple(ManifestShard.from_dict(s) for s in d["shards"])
            manifest = cls(
                format_version=int(d["format_version"]),
                source=d["source"],
                fps=int(d["fps"]),
                features=_in_order(d["features"], d.get("feature_order")),
                tasks={int(k): v for k, v in d["tasks"].items()},
                stats=d.get("stats", {}),
                robot_type=d.get("robot_type"),
                videos=d.get("videos", {}),
                shards=shards,
                skipped_episodes=tuple(SkippedEpisode.from_dict(x) for x in d.get("skipped_episodes", ())),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
            raise FormatError(f"{where}: malformed manifest ({e!r}); the manifest is damaged or hostile, repack "
                              "or restore it") from e
        return check_manifest(manifest, where, bad_episodes)


def _check_fields(d: Mapping[str, Any]) -> None:
    """The types and ranges of the manifest fields a reader builds on, before it builds on them;
    raises ValueError/TypeError naming the field (the caller names the file)."""
    for key, kind in (("source", dict), ("features", dict), ("tasks", dict), ("stats", dict), ("videos", dict)):
        if key in d and not isinstance(d[key], kind):
            raise TypeError(f"{key!r} is {type(d[key]).__name__}, not a JSON object")
    fps = d.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps != int(fps) or fps <= 0:
        raise ValueError(f"'fps' {fps!r} is not a positive whole frame rate")
    order = d.get("feature_order")
    if order is not None and not (isinstance(order, list) and all(isinstance(k, str) for k in order)):
        raise TypeError(f"'feature_order' {order!r} is not a list of feature names")
    for name, f in d["features"].items():
        if not isinstance(f, dict):
            raise TypeError(f"feature {name!r} is {type(f).__name__}, not a JSON object")
        shape = f.get("shape", [])
        if not (isinstance(shape, list) and all(whole_number(n, 0) for n in shape)):
            raise ValueError(f"feature {name!r} has shape {shape!r}, not a list of sizes")
    for index, task in d["tasks"].items():
        if not isinstance(task, str):
            raise TypeError(f"task {index!r} is {type(task).__name__}, not a string")
    for name, v in d.get("videos", {}).items():
        if not isinstance(v, dict):
            raise TypeError(f"videos entry {name!r} is {type(v).__name__}, not a JSON object")
        for side in ("width", "height"):
            n = v.get(side, 1)
            if not whole_number(n, 1, MAX_VIDEO_SIDE):
                raise ValueError(f"videos entry {name!r} has {side} {n!r}, not a size from 1 to {MAX_VIDEO_SIDE}")
    if d.get("robot_type") is not None and not isinstance(d["robot_type"], str):
        raise TypeError(f"'robot_type' {d['robot_type']!r} is not a string")
    for name in depth_keys(d["features"]):
        unit = depth_unit(d["features"][name])
        if unit is not None and unit not in DEPTH_UNITS:  # rescaling its stats and frames would assume mm
            raise ValueError(f"depth feature {name!r} records depth_unit {unit!r}, not one of {DEPTH_UNITS}")


def _in_order(features: Mapping[str, Any], order: Any) -> dict[str, Any]:
    """``features`` in ``feature_order`` (info.json's order); sorted names in manifests without it."""
    if not order:
        return dict(features)
    return {k: features[k] for k in order if k in features} | {k: v for k, v in features.items() if k not in order}


def check_name(name: Any, pattern: "re.Pattern[str]", what: str, where: str) -> None:
    """Refuse a name from a manifest that is not what the format writes: nothing a manifest names
    may point outside the dataset root (no separators, no ``..``, no absolute paths or URLs)."""
    if not isinstance(name, str) or not pattern.fullmatch(name) or ".." in name:
        raise FormatError(f"{where}: {what} name {name!r} is not allowed (a pack names only "
                          f"shard-NNNNNN.tar files and <key>.<suffix> members); the manifest is damaged or hostile")


def check_manifest(m: "Manifest", where: str, bad_episodes: list[str] | None = None) -> "Manifest":
    """Everything a reader trusts in a manifest before it opens a shard: names, byte ranges inside
    each shard's recorded size, and each episode listed once; returns ``m``.

    With a ``bad_episodes`` list, an episode whose own entry is unusable (a byte range outside its
    shard, a negative length, no members, a malformed member name) is left out of the returned
    manifest and its error appended to the list; a bad shard name, size or an episode listed twice
    still raises (they make the whole manifest untrustworthy)."""
    seen: dict[int, str] = {}
    shards = []
    for s in m.shards:
        check_name(s.name, SHARD_NAME_RE, "shard", where)
        if s.bytes < 0:
            raise FormatError(f"{where}: {s.name} has negative size {s.bytes}")
        kept = []
        for e in s.episodes:
            at = f"{where}: {s.name}, episode {e.episode_index}"
            if e.episode_index in seen:
                raise FormatError(f"{at}: listed twice (also in {seen[e.episode_index]}); the manifest is damaged, repack")
            seen[e.episode_index] = s.name
            try:
                _check_episode(e, s.bytes, at, checksums=m.format_version >= 2)
            except FormatError as err:
                if bad_episodes is None:
                    raise
                bad_episodes.append(str(err))
                continue
            kept.append(e)
        shards.append(s if len(kept) == len(s.episodes) else replace(s, episodes=tuple(kept)))
    return m if bad_episodes is None else replace(m, shards=tuple(shards))


def _check_episode(e: ManifestEpisode, shard_bytes: int, at: str, checksums: bool) -> None:
    """``checksums``: every member must carry its XXH3 (format version 2 records one for each; only
    version 1 packs are read unchecked)."""
    if e.length < 0:
        raise FormatError(f"{at}: negative length {e.length}")
    if not e.members:
        raise FormatError(f"{at}: no members")
    for suffix, ref in e.members.items():
        check_name(suffix, MEMBER_RE, "member", at)
        if ref.offset < TAR_HEADER or ref.size < 0 or ref.offset + ref.size > shard_bytes:
            raise FormatError(
                f"{at}: member {suffix} at [{ref.offset}, {ref.offset + ref.size}) lies outside the "
                f"shard's member data [{TAR_HEADER}, {shard_bytes}); the manifest is damaged, repack or restore it")
        if checksums and ref.xxh3 is None:
            raise FormatError(f"{at}: member {suffix} has no checksum, which format version 2 records for every "
                              "member; the manifest is damaged or hostile, repack or restore it")


def depth_keys(features: Mapping[str, Any]) -> list[str]:
    """Features marked as depth maps, as lerobot finds them (``info.is_depth_map``, or the legacy
    ``video.is_depth_map`` in ``info`` or ``video_info``)."""
    def is_depth(f: Mapping[str, Any]) -> bool:
        info, video_info = f.get("info") or {}, f.get("video_info") or {}
        return bool(info.get("is_depth_map") or info.get("video.is_depth_map") or video_info.get("video.is_depth_map"))

    return [k for k, f in features.items() if is_depth(f)]


#: The units lerobot records depth maps in (a feature's ``depth_unit``) and gives them in
#: (``depth_output_unit``).
DEPTH_UNITS = ("mm", "m")


def depth_unit(feature: Mapping[str, Any]) -> str | None:
    """The unit a depth feature's frames were recorded in (its ``info``'s ``depth_unit``: ``"mm"``
    or ``"m"``, as lerobot's writer records it), None when it records none."""
    return (feature.get("info") or {}).get("depth_unit")


def frame_columns(features: Mapping[str, Any]) -> dict[str, Any]:
    """The columns of a ``frames.arrow`` member, in feature order: every feature that is not a
    video → the Arrow type ``LeRobotDataset`` reads it as (it casts its parquet files to the
    declared features: a number, bool or string of shape ``[1]`` is a scalar, of shape ``[n]`` a
    fixed-size list of ``n``), or None for a column kept as stored (images, arrays of two or more
    dimensions, language columns, other dtypes)."""
    import numpy as np
    import pyarrow as pa

    out: dict[str, Any] = {}
    for key, f in features.items():
        dtype, shape = f.get("dtype"), list(f.get("shape") or [])
        if dtype == "video":
            continue
        scalar = None
        if dtype == "string":
            scalar = pa.string()
        elif isinstance(dtype, str) and dtype not in ("image", "audio"):
            try:
                np_dtype = np.dtype(dtype)
            except TypeError:
                np_dtype = None
            if np_dtype is not None and np_dtype.kind in "biuf":
                scalar = pa.from_numpy_dtype(np_dtype)
        if scalar is None or key in LANGUAGE_COLUMNS or len(shape) != 1 or not isinstance(shape[0], int):
            out[key] = None
        else:
            out[key] = scalar if shape == [1] else pa.list_(scalar, int(shape[0]))
    return out


def conform_frames(table: Any, columns: Mapping[str, Any]) -> Any:
    """``table`` (a ``pyarrow.Table``) with exactly ``columns`` (:func:`frame_columns`), each of
    the declared type, converted as ``LeRobotDataset`` converts its parquet (Arrow's cast: a
    float64 column declared float32 is rounded to it, a list becomes a fixed-size list only if
    every row has the declared length). A column missing or extra, a value out of the declared
    type's range and a structurally invalid table (offsets out of bounds) raise FormatError
    naming the column; the caller adds where the table came from."""
    import pyarrow as pa

    try:
        table.validate(full=True)
    except pa.ArrowException as e:
        raise FormatError(f"is not valid Arrow data ({e})") from e
    have = list(table.column_names)
    missing = [k for k in columns if k not in have]
    extra = [k for k in have if k not in columns]
    if missing or extra or len(set(have)) != len(have):
        raise FormatError(f"has columns {have}, the features declare {list(columns)}")
    for name, want in columns.items():
        got = table.schema.field(name).type
        if want is None or got.equals(want):
            continue
        try:
            col = table.column(name).cast(want)
        except pa.ArrowException as e:  # a size, type or value the declared type cannot hold
            raise FormatError(f"column {name!r} of type {got} does not convert to the declared {want} ({e})") from e
        table = table.set_column(table.schema.get_field_index(name), pa.field(name, want), col)
    return table.select(list(columns))
