"""An episode's rows of the source ``data/`` parquet → the ``frames.arrow`` member (Arrow IPC file).

Each data parquet is read once per shard task, only the row groups holding that task's episodes
(parquet statistics on ``episode_index``), and only the columns ``meta/info.json`` declares; the
rows are then sliced per episode and checked against ``meta/episodes`` (row count and a contiguous
``frame_index`` from 0), since a disagreement would silently shift every frame downstream.

Arrow IPC rather than Parquet: an episode's table is small (hundreds of rows), the reader opens it
with zero copies and no decompression, and the member stays a single flat buffer that a ranged read
can fetch. Uncompressed, as FORMAT.md says.
"""

from __future__ import annotations

import logging
from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .source import EpisodeRecord, Source, SourceError

log = logging.getLogger(__name__)


def read_episode_tables(source: Source, data_path: str, episodes: Sequence[EpisodeRecord]) -> dict[int, pa.Table]:
    """Rows of each of ``episodes`` (all stored in ``data_path``), in frame_index order, declared columns only."""
    path = source.path(data_path)
    wanted = [e.episode_index for e in episodes]
    names = ", ".join(str(i) for i in wanted)
    try:
        schema = pq.read_schema(path, filesystem=source.fs)
        table = pq.read_table(path, filesystem=source.fs, filters=[("episode_index", "in", wanted)])
    except FileNotFoundError as e:
        raise SourceError(f"episode {names}: data file {path} is missing") from e
    except (pa.ArrowInvalid, OSError) as e:
        raise SourceError(f"episode {names}: data file {path} cannot be read ({e})") from e
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
    table = table.select(declared).replace_schema_metadata(None)
    out = {}
    for ep in episodes:
        rows = table.filter(pc.equal(table["episode_index"], ep.episode_index))
        rows = rows.take(pc.sort_indices(rows["frame_index"]))
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
        out[ep.episode_index] = rows.combine_chunks()
    return out


def to_ipc_bytes(table: pa.Table) -> bytes:
    """Serialize a table as one uncompressed Arrow IPC file (deterministic for equal tables)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
