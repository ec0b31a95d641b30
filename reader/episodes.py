"""Member bytes of one episode → an in-memory :class:`LoadedEpisode` (metadata, columns, clip bytes).

An episode arrives as one ranged read covering all its members (offsets from the manifest), so a
reader never scans a tar to find it. Parsing validates what later stages rely on (episode index,
length, frame order, the frame table's validity, columns and types, one clip per camera) and
every error names the shard, the episode and the member at fault. Numeric columns become torch
tensors once per episode, so building a sample is a few index operations; image-dtype columns keep
their encoded bytes until a sample needs them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import msgpack
import numpy as np
import pyarrow as pa
import torch

from ..format import (FRAMES_MEMBER, META_MEMBER, TAR_HEADER, FormatError, ManifestEpisode, ShardEpisodeMeta, clip_member,
                      conform_frames, episode_key, header_names, member_checksum)
from .arrow_ipc import IpcLayoutError, compressed_batches
from .storage import StorageError, Store

log = logging.getLogger(__name__)


class EpisodeError(FormatError):
    """An episode's members are missing, truncated or do not decode; the message names shard and episode."""


@dataclass
class LoadedEpisode:
    """One episode in memory.

    ``columns`` maps each non-video feature to either a tensor of shape ``(length, *shape)``
    (numeric columns, rows in ``frame_index`` order) or a list of ``length`` encoded-image bytes
    (image-dtype features). ``clips`` maps each video key to its mp4 clip bytes.
    """

    shard: str
    meta: ShardEpisodeMeta
    columns: dict[str, Any]
    clips: dict[str, bytes]
    #: Derived per-episode tables (e.g. the sample builder's window lookups), dropped with the episode.
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def episode_index(self) -> int:
        return self.meta.episode_index

    @property
    def length(self) -> int:
        return self.meta.length

    @property
    def where(self) -> str:
        return f"{self.shard}, episode {self.meta.episode_index}"


def request_for(shard: str, entry: ManifestEpisode) -> tuple[str, int, int]:
    """The ``(shard name, start, end)`` byte range holding all of ``entry``'s members and their tar headers."""
    start, end = entry.span
    return shard, start, end


def split_members(blob: bytes, entry: ManifestEpisode, shard: str) -> dict[str, memoryview]:
    """Slice the bytes of :func:`request_for`'s range into members (suffix → bytes, zero-copy),
    each checked by :func:`checked_member`."""
    start, end = entry.span
    if len(blob) != end - start:
        raise EpisodeError(
            f"{shard}, episode {entry.episode_index}: expected {end - start} bytes at offset {start}, "
            f"got {len(blob)} (truncated shard? repack or re-download it)"
        )
    view = memoryview(blob)
    return {suffix: checked_member(view[m.offset - start - TAR_HEADER : m.offset - start + m.size], entry, suffix, shard)
            for suffix, m in entry.members.items()}


def member_request(shard: str, entry: ManifestEpisode, suffix: str) -> tuple[str, int, int]:
    """The ``(shard name, start, end)`` byte range of one member and its tar header, for :func:`checked_member`."""
    m = entry.members[suffix]
    return shard, m.offset - TAR_HEADER, m.offset + m.size


def checked_member(data: bytes | memoryview, entry: ManifestEpisode, suffix: str, shard: str) -> memoryview:
    """The bytes of ``entry``'s member ``suffix`` from ``data`` (its tar header, then the member),
    checked against the header (the manifest's range must hold the member it names: a liar pointing
    one member at another's bytes, checksum and all, is caught here) and the manifest's checksum."""
    m = entry.members[suffix]
    view = memoryview(data)
    name = f"{episode_key(entry.episode_index)}.{suffix}"
    if len(view) != TAR_HEADER + m.size:
        raise EpisodeError(f"{shard}, episode {entry.episode_index}: member {name}: expected {TAR_HEADER + m.size} "
                           f"bytes at offset {m.offset - TAR_HEADER}, got {len(view)} (truncated shard? repack or "
                           "re-download it)")
    if not header_names(view[:TAR_HEADER], name):
        raise EpisodeError(
            f"{shard}, episode {entry.episode_index}: member {name} is not at offset {m.offset}: the tar "
            "header before it names another member or none; the manifest does not describe this "
            "shard, repack or restore it"
        )
    member = view[TAR_HEADER:]
    if m.xxh3 is not None and (got := member_checksum(member)) != m.xxh3:
        raise EpisodeError(
            f"{shard}, episode {entry.episode_index}: member {name} "
            f"fails its checksum (xxh3 {got}, manifest {m.xxh3}): the shard is damaged or the manifest "
            "does not describe it; re-download or repack it"
        )
    return member


def episode_meta(data: bytes | memoryview, entry: ManifestEpisode, shard: str) -> ShardEpisodeMeta:
    """An episode's ``meta.msgpack`` member, checked against the manifest ``entry`` (its episode and length)."""
    where = f"{shard}, episode {entry.episode_index}: {episode_key(entry.episode_index)}.{META_MEMBER}"
    try:
        raw = msgpack.unpackb(bytes(data), raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as e:
        raise EpisodeError(f"{where} is not valid msgpack ({e})") from e
    if not isinstance(raw, dict):
        raise EpisodeError(f"{where} holds {type(raw).__name__}, expected a map")
    try:
        meta = ShardEpisodeMeta.from_dict(raw, where=where)
    except FormatError as e:
        raise EpisodeError(str(e)) from e
    if meta.episode_index != entry.episode_index or meta.length != entry.length:
        raise EpisodeError(
            f"{where} describes episode {meta.episode_index} of length "
            f"{meta.length}, the manifest says episode {entry.episode_index} of length {entry.length}"
        )
    return meta


def parse_episode(
    members: Mapping[str, bytes | memoryview],
    entry: ManifestEpisode,
    shard: str,
    video_keys: Sequence[str],
    image_keys: Sequence[str] = (),
    declared: Mapping[str, Any] | None = None,
) -> LoadedEpisode:
    """Build an :class:`LoadedEpisode` from its members, checking them against the manifest ``entry``.

    ``declared``: the frame table's columns and types (``format.frame_columns`` of the manifest's
    features); the table must have exactly these columns and is converted to their
    types (``format.conform_frames``). Without it (None), any columns are taken as stored; the
    table is checked to be valid Arrow data either way (a table whose offsets point outside its
    buffers would otherwise read memory that is not the shard's)."""
    key = episode_key(entry.episode_index)
    where = f"{shard}, episode {entry.episode_index}"

    def member(suffix: str) -> bytes | memoryview:
        if suffix not in members:
            raise EpisodeError(f"{where}: member {key}.{suffix} is missing; have {sorted(members)}")
        return members[suffix]

    meta = episode_meta(member(META_MEMBER), entry, shard)
    frames = member(FRAMES_MEMBER)
    try:
        if compressed_batches(frames):  # read in place if not: never larger than the member
            raise EpisodeError(f"{where}: {key}.{FRAMES_MEMBER} is compressed, frame tables are stored "
                               "uncompressed (a damaged or hostile shard: not read); repack it")
        table = pa.ipc.open_file(pa.BufferReader(frames)).read_all()
    except (IpcLayoutError, pa.ArrowException, OSError) as e:
        raise EpisodeError(f"{where}: {key}.{FRAMES_MEMBER} is not an Arrow IPC file ({e})") from e
    if table.num_rows != meta.length:
        raise EpisodeError(f"{where}: {key}.{FRAMES_MEMBER} has {table.num_rows} rows, expected {meta.length}")
    if table.num_rows > len(frames):  # columns without data (null type) could claim any length
        raise EpisodeError(f"{where}: {key}.{FRAMES_MEMBER} claims {table.num_rows} rows in {len(frames)} "
                           "bytes (a damaged or hostile shard); repack it")
    try:
        table = conform_frames(table, declared if declared is not None else dict.fromkeys(table.column_names))
    except FormatError as e:
        raise EpisodeError(f"{where}: {key}.{FRAMES_MEMBER} {e}; the manifest's features do not describe "
                           "this shard, repack it") from e
    columns = {name: _column(table.column(name), name, name in image_keys, f"{where}: {key}.{FRAMES_MEMBER}")
               for name in table.column_names}
    fi = columns.get("frame_index")
    if isinstance(fi, torch.Tensor) and not torch.equal(fi, torch.arange(meta.length, dtype=fi.dtype)):
        raise EpisodeError(f"{where}: {key}.{FRAMES_MEMBER} rows are not in frame_index order 0..{meta.length - 1}")
    clips = {}
    for vk in video_keys:
        clips[vk] = bytes(member(clip_member(vk)))
        info = meta.clips.get(vk)
        if info is None:
            raise EpisodeError(f"{where}: {key}.{META_MEMBER} has no clip info for camera {vk!r}")
    return LoadedEpisode(shard=shard, meta=meta, columns=columns, clips=clips)


def _column(col: pa.ChunkedArray, name: str, is_image: bool, where: str) -> Any:
    col = col.combine_chunks()
    if is_image or pa.types.is_struct(col.type):
        if pa.types.is_struct(col.type) and col.type.get_field_index("bytes") >= 0:
            return col.field("bytes").to_pylist()
        return col.to_pylist()
    try:
        if _is_list(col.type) and not _is_list(col.type.value_type):
            arr = _values(col.flatten()).reshape(len(col), -1)
        elif _is_list(col.type):  # nested lists, e.g. shape (2, 3): rare, take the slow path
            arr = np.asarray(col.to_pylist())
        else:
            arr = _values(col)
    except (pa.ArrowInvalid, ValueError) as e:
        raise EpisodeError(f"{where}: column {name!r} of type {col.type} cannot become an array ({e})") from e
    if arr.dtype == object:
        return arr.tolist()
    # As LeRobotDataset's samples hold numbers (torch.tensor of the Python values its parquet rows
    # become): integers as int64, floats as torch's default float dtype (float32), bools as bools;
    # so a float64 or int32 feature gives the same dtypes (and float32-rounded values) as lerobot.
    if arr.dtype.kind in "iu" and arr.dtype != np.int64:
        if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            raise EpisodeError(f"{where}: column {name!r} holds {int(arr.max())}, more than int64 holds "
                               "(LeRobotDataset cannot read it either)")
        arr = arr.astype(np.int64)
    t = torch.from_numpy(np.array(arr, copy=True))  # own, writable memory (not the shard bytes)
    return t.to(torch.get_default_dtype()) if t.dtype.is_floating_point else t


def _values(arr: pa.Array) -> np.ndarray:
    """A flat Arrow array's values as numpy. Numbers and bools without nulls go through DLPack:
    pyarrow's ``to_numpy`` imports pandas where it is installed, about 0.3 s in each new worker."""
    if arr.null_count == 0 and (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)):
        return np.from_dlpack(arr)
    if arr.null_count == 0 and pa.types.is_boolean(arr.type):  # bit-packed: DLPack takes bytes
        return np.from_dlpack(arr.cast(pa.uint8())).astype(bool)
    return arr.to_numpy(zero_copy_only=False)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)


class EpisodeLoader:
    """Loads episodes in plan order from one stream of ranged reads, as the pool asks for them.

    ``where[p]`` is (shard name, manifest entry) of span ``p``; ``todo`` the span positions still
    to read, in order (spans exhausted before a resume point are left out, so they are never read).
    ``get(p)`` reads forward until span ``p`` is in memory: the pool only draws from its first
    spans, so what is loaded is what the pool holds. With ``on_error="skip"`` an episode that
    cannot be read or parsed becomes ``None`` (logged) and the stream reopens at the next one.
    ``declared``: the frame table's columns and types (:func:`parse_episode`).
    """

    def __init__(self, store: Store, where: Sequence[tuple[str, ManifestEpisode]], todo: Sequence[int],
                 video_keys: Sequence[str], image_keys: Sequence[str], on_error: str = "raise",
                 declared: Mapping[str, Any] | None = None) -> None:
        self.store, self.where, self.todo = store, where, list(todo)
        self.video_keys, self.image_keys, self.on_error = video_keys, image_keys, on_error
        self.declared = declared
        self.loaded: dict[int, LoadedEpisode | None] = {}
        self._next = 0
        self._stream: Iterator[bytes] | None = None

    def get(self, p: int) -> LoadedEpisode | None:
        while p not in self.loaded:
            if self._next >= len(self.todo):
                raise RuntimeError(f"internal: span {p} drawn but not planned")
            q = self.todo[self._next]
            shard, entry = self.where[q]
            if self._stream is None:
                self._stream = self.store.stream_ranges(request_for(*self.where[r]) for r in self.todo[self._next:])
            self._next += 1
            try:
                blob = next(self._stream)
                ep: LoadedEpisode | None = parse_episode(split_members(blob, entry, shard), entry, shard,
                                                         self.video_keys, self.image_keys, self.declared)
            except (StorageError, FormatError, OSError) as e:
                self._stream = None  # a failed stream is dead; the next span opens a new one
                if self.on_error == "raise":
                    if isinstance(e, EpisodeError):
                        raise
                    raise EpisodeError(f"{shard}, episode {entry.episode_index}: cannot load ({e})") from e
                if isinstance(e, EpisodeError):  # names its shard and episode itself
                    log.warning("skipping %s", e)
                else:
                    log.warning("skipping %s, episode %d: %s", shard, entry.episode_index, e)
                ep = None
            self.loaded[q] = ep
        return self.loaded[p]

    def drop(self, p: int) -> None:
        """Forget span ``p``'s episode (it left the pool)."""
        self.loaded.pop(p, None)
