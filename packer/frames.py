"""An episode's rows of the source ``data/`` parquet → the ``frames.arrow`` member (Arrow IPC file).

Each data parquet is opened once per shard task and only the row groups that may hold that task's
episodes are read (parquet statistics on ``episode_index``; LeRobot writes one group per episode),
and only the columns ``meta/info.json`` declares, converted to the types it declares as
``LeRobotDataset`` converts them (``format.conform_frames``: a float64 column declared float32
becomes float32, so samples keep lerobot's dtypes). A local file's footer is parsed once per process
(cached by path, inode, size and mtime), not once per shard task. The rows are then taken per
episode and checked against ``meta/episodes`` (row count and a contiguous ``frame_index`` from 0),
since a disagreement would silently shift every frame downstream.

Parquet page checksums are verified where the file carries them (``write_page_checksum``); a
damaged or unreadable file is a SourceError naming it and its episodes.

Arrow IPC rather than Parquet: an episode's table is small (hundreds of rows), the reader opens it
with zero copies and no decompression, and the member stays a single flat buffer that a ranged read
can fetch. Uncompressed, as FORMAT.md says.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..format import FormatError, conform_frames, frame_columns
from .source import SourceEpisode, Source, SourceError, is_local

log = logging.getLogger(__name__)

_Ranges = list  # per row group: (min, max) of episode_index from its statistics, or None when unknown
_FOOTERS: OrderedDict[tuple, tuple[pq.FileMetaData, _Ranges]] = OrderedDict()
_FOOTERS_SIZE = 256  # files


def _open(path: str, fs: Any) -> tuple[pq.ParquetFile, _Ranges]:
    """The parquet file and its row groups' episode ranges; for a local file unchanged since it was
    last read, footer and ranges come from the cache (parsing them cost ~1 ms per shard task)."""
    if not is_local(fs):
        pf = pq.ParquetFile(fs.open(path, "rb"), page_checksum_verification=True)  # not filesystem=fs: its isfile() is a whole-file GET on HTTP
        return pf, _ranges(pf)
    st = os.stat(path)
    key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _FOOTERS.get(key)
    pf = pq.ParquetFile(path, metadata=cached[0] if cached else None, page_checksum_verification=True)
    _FOOTERS[key] = cached or (pf.metadata, _ranges(pf))
    _FOOTERS.move_to_end(key)
    while len(_FOOTERS) > _FOOTERS_SIZE:
        _FOOTERS.popitem(last=False)
    return pf, _FOOTERS[key][1]


def _ranges(pf: pq.ParquetFile) -> _Ranges:
    leaves = [pf.schema.column(j).path for j in range(len(pf.schema))]
    if "episode_index" not in leaves:
        return [None] * pf.num_row_groups
    col = leaves.index("episode_index")  # parquet leaf index, not the arrow field index
    stats = (pf.metadata.row_group(i).column(col).statistics for i in range(pf.num_row_groups))
    return [(st.min, st.max) if st is not None and st.has_min_max else None for st in stats]


def _pick(ranges: _Ranges, wanted: set[int]) -> list[int]:
    """Row groups whose ``episode_index`` range may hold one of ``wanted`` (all when unknown)."""
    lo_all, hi_all = min(wanted), max(wanted)
    return [i for i, r in enumerate(ranges)
            if r is None or (r[0] <= hi_all and r[1] >= lo_all and any(r[0] <= w <= r[1] for w in wanted))]


def read_episode_tables(source: Source, data_path: str, episodes: Sequence[SourceEpisode]) -> dict[int, pa.Table]:
    """Rows of each of ``episodes`` (all stored in ``data_path``), in frame_index order, declared columns only."""
    path = source.path(data_path)
    wanted = [e.episode_index for e in episodes]
    names = ", ".join(str(i) for i in wanted)
    try:
        pf, ranges = _open(path, source.fs)
        with pf:
            schema = pf.schema_arrow
            columns = [c for c in source.frame_columns if c in schema.names]
            table = pf.read_row_groups(_pick(ranges, set(wanted)), columns=columns, use_threads=False)
    except FileNotFoundError as e:
        raise SourceError(f"episode {names}: data file {path} is missing") from e
    except (pa.ArrowException, OSError) as e:  # damaged pages, a page checksum mismatch
        raise SourceError(f"episode {names}: data file {path} cannot be read ({e}); the file is damaged") from e
    declared = source.frame_columns
    missing = [c for c in declared if c not in schema.names]
    if missing:
        raise SourceError(
            f"episode {names}: data file {path} lacks declared feature columns {missing}; "
            "meta/info.json and the parquet disagree"
        )
    extra = [c for c in schema.names if c not in declared]
    if extra:
        log.info("%s: leaving out columns %s that meta/info.json does not declare", path, extra)
    try:
        table = conform_frames(table.select(declared), frame_columns(source.features))
    except FormatError as e:
        raise SourceError(f"episode {names}: data file {path} {e}; meta/info.json and the parquet disagree") from e
    table = table.replace_schema_metadata(None).combine_chunks()
    owner = table["episode_index"].to_numpy()
    out = {}
    for ep in episodes:
        idx = np.flatnonzero(owner == ep.episode_index)
        order = table["frame_index"].to_numpy()[idx]
        if len(order) > 1 and (np.diff(order) < 0).any():
            idx = idx[np.argsort(order, kind="stable")]
        rows = table.take(idx)  # a copy, not a slice: the member's bytes then do not depend on its offset
        if rows.num_rows != ep.length:
            raise SourceError(
                f"episode {ep.episode_index}: data file {path} has {rows.num_rows} rows, "
                f"meta/episodes says length {ep.length}; the dataset is inconsistent"
            )
        fi = rows["frame_index"].to_numpy()
        if len(fi) and not (fi == range(len(fi))).all():
            raise SourceError(
                f"episode {ep.episode_index}: data file {path} frame_index is not 0..{ep.length - 1} "
                "without gaps; the dataset is inconsistent"
            )
        out[ep.episode_index] = rows
    return out


def to_ipc_bytes(table: pa.Table) -> bytes:
    """Serialize a table as one uncompressed Arrow IPC file (deterministic for equal tables)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
