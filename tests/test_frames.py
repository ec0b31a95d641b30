"""packer/frames.py: an episode's parquet rows → Arrow IPC, checked against meta/episodes."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lerobot_wds.packer.frames import read_episode_tables, to_ipc_bytes
from lerobot_wds.packer.source import SourceError, open_source

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("fixture", ["lerobot_v3_av1", "lerobot_v3_images"])
def test_tables_equal_source_rows_with_source_types(fixture):
    s = open_source(str(DATA / fixture))
    for path in sorted({e.data_path for e in s.episodes}):
        eps = [e for e in s.episodes if e.data_path == path]
        tables = read_episode_tables(s, path, eps)
        raw = pq.read_table(s.path(path))
        for e in eps:
            t = pa.ipc.open_file(to_ipc_bytes(tables[e.episode_index])).read_all()
            want = raw.filter(pc.equal(raw["episode_index"], e.episode_index)).select(s.frame_columns)
            assert t.schema.remove_metadata() == want.schema.remove_metadata()
            assert t.to_pylist() == want.to_pylist()
            assert t.num_rows == e.length


def test_undeclared_columns_are_left_out_with_a_note(tmp_path, caplog):
    root = shutil.copytree(DATA / "lerobot_v3_av1", tmp_path / "ds")
    p = root / "data/chunk-000/file-002.parquet"
    t = pq.read_table(p)
    pq.write_table(t.append_column("annotation", pa.array([[1] * (i % 3) for i in range(t.num_rows)])), p)
    s = open_source(str(root))
    with caplog.at_level(logging.INFO, logger="lerobot_wds.packer.frames"):
        tables = read_episode_tables(s, "data/chunk-000/file-002.parquet", [s.episodes[5]])
    assert "annotation" not in tables[5].column_names
    assert "annotation" in caplog.text and "file-002.parquet" in caplog.text


def test_rows_disagreeing_with_meta_name_episode_and_file(tmp_path):
    root = shutil.copytree(DATA / "lerobot_v3_av1", tmp_path / "ds")
    p = root / "data/chunk-000/file-001.parquet"
    t = pq.read_table(p)
    pq.write_table(t.slice(0, t.num_rows - 1), p)  # drop episode 4's last row
    s = open_source(str(root))
    with pytest.raises(SourceError, match=r"episode 4: data file .*file-001\.parquet has 89 rows.*length 90"):
        read_episode_tables(s, "data/chunk-000/file-001.parquet", list(s.episodes[3:5]))


def test_missing_data_file_names_episode_and_file(tmp_path):
    root = shutil.copytree(DATA / "lerobot_v3_av1", tmp_path / "ds")
    (root / "data/chunk-000/file-002.parquet").unlink()
    s = open_source(str(root))
    with pytest.raises(SourceError, match=r"episode 5: data file .*file-002\.parquet is missing"):
        read_episode_tables(s, "data/chunk-000/file-002.parquet", [s.episodes[5]])


def test_row_groups_are_pruned_by_episode_statistics():
    from lerobot_wds.packer.frames import _pick, _ranges

    # images fixture, file-000: episodes 0 and 1, one row group each, an image struct column first
    # (so the parquet leaf index of episode_index differs from its arrow field index).
    pf = pq.ParquetFile(DATA / "lerobot_v3_images/data/chunk-000/file-000.parquet")
    _row_groups = lambda pf, wanted: _pick(_ranges(pf), wanted)  # noqa: E731
    assert (_row_groups(pf, {0}), _row_groups(pf, {1}), _row_groups(pf, {0, 1}), _row_groups(pf, {5})) == ([0], [1], [0, 1], [])


@pytest.mark.parametrize("fixture", ["lerobot_v3_av1", "lerobot_v3_images"])
def test_member_bytes_do_not_depend_on_the_other_episodes_read(fixture):
    """An episode's frames.arrow is the same bytes whether its shard task read it alone or with its
    file's other episodes (the shard plan must not change a member's bytes)."""
    s = open_source(str(DATA / fixture))
    for path in sorted({e.data_path for e in s.episodes}):
        eps = [e for e in s.episodes if e.data_path == path]
        together = read_episode_tables(s, path, eps)
        for e in eps:
            alone = read_episode_tables(s, path, [e])[e.episode_index]
            assert to_ipc_bytes(alone) == to_ipc_bytes(together[e.episode_index]), (path, e.episode_index)
