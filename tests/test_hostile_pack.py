"""Issue 11, packer half: faults in OUT and bad sources give one-line errors naming what is at fault."""

from __future__ import annotations

import json
import re
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lerobot_wds.format import Manifest
from lerobot_wds.packer.check import check
from lerobot_wds.packer.outdir import pack_lock
from lerobot_wds.packer.pack import PackOptions, pack
from lerobot_wds.packer.source import SourceError, open_source

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent
SRC = DATA / "lerobot_v3_av1"


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lerobot_wds.packer.cli", *args], cwd=REPO,
                          capture_output=True, text=True, **kw)


def _copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SRC, tmp_path / "src"))


def test_second_concurrent_pack_stops_at_once(tmp_path):
    out = tmp_path / "out"
    with pack_lock(__import__("fsspec").filesystem("file"), str(out)):  # a pack holding the lock
        r = _cli("pack", str(SRC), str(out), "--no-progress")
    assert r.returncode == 1 and "another pack is running" in r.stderr and "Traceback" not in r.stderr
    assert not list(out.glob("shard-*"))
    assert _cli("pack", str(SRC), str(out), "--no-progress").returncode == 0  # lock released with its holder


def test_stray_shard_in_out_is_not_overwritten(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "shard-000000.tar").write_bytes(b"someone else's")
    r = _cli("pack", str(SRC), str(out), "--no-progress")
    assert r.returncode == 1 and "shard-000000.tar" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert (out / "shard-000000.tar").read_bytes() == b"someone else's"


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def test_write_fault_is_one_line_and_leaves_no_temp_files(tmp_path):
    out = tmp_path / "out"
    r = _cli("pack", str(SRC), str(out), "--no-progress", preexec_fn=_limit_file_size)
    assert r.returncode == 1, r.stderr
    assert "cannot write" in r.stderr and "shard-000000.tar" in r.stderr and "Traceback" not in r.stderr
    assert not list(out.rglob("*.tmp-*")) and not (out / "manifest.json").exists()


def test_changed_source_between_runs_is_refused_naming_the_file(tmp_path):
    src, out = _copy(tmp_path), tmp_path / "out"
    pack(str(src), str(out), PackOptions(progress=False))
    data = next((src / "data").rglob("*.parquet"))
    pq.write_table(pq.read_table(data), data)  # same rows, new file: size or mtime differ
    r = _cli("pack", str(src), str(out), "--no-progress")
    assert r.returncode == 1 and "source changed" in r.stderr and data.name in r.stderr


def test_bad_info_json_is_named(tmp_path):
    src = _copy(tmp_path)
    info = src / "meta/info.json"
    d = json.loads(info.read_text())
    info.write_text(json.dumps({k: v for k, v in d.items() if k != "features"}))
    with pytest.raises(SourceError, match=r"info\.json: no 'features'"):
        open_source(str(src))
    for text in ("{not json", "[" * 100_000, '{"fps": ' + "9" * 5000 + "}"):  # syntax, nesting, digits
        info.write_text(text)
        with pytest.raises(SourceError, match=r"info\.json: not valid JSON"):
            open_source(str(src))


@pytest.mark.parametrize("template,prefix", [("data_path", "../outside/"), ("video_path", "../outside/"),
                                             ("video_path", "/tmp/"), ("data_path", "file:///tmp/")])
def test_a_path_template_leaving_the_dataset_root_is_refused(tmp_path, template, prefix):
    """info.json's templates make every file path the packer reads: one that climbs out of the root
    (the real files moved there, so a pack would succeed) is refused before anything is read."""
    src = _copy(tmp_path)
    outside = tmp_path / "outside"
    shutil.copytree(src, outside)
    info = src / "meta/info.json"
    d = json.loads(info.read_text())
    d[template] = prefix + d[template]
    info.write_text(json.dumps(d))
    with pytest.raises(SourceError, match=r"episode 0: (data|video observation\.images\.\w+): path '" + re.escape(prefix)
                       + r".*' leaves the dataset root"):
        open_source(str(src))
    r = _cli("pack", str(src), str(tmp_path / "out"), "--no-progress")
    assert r.returncode == 1 and "leaves the dataset root" in r.stderr and not (tmp_path / "out/manifest.json").exists()


def test_duplicate_episode_row_is_refused(tmp_path):
    src = _copy(tmp_path)
    path = next((src / "meta/episodes").rglob("*.parquet"))
    t = pq.read_table(path)
    pq.write_table(__import__("pyarrow").concat_tables([t, t.slice(0, 1)]), path)
    with pytest.raises(SourceError, match="episode 0 is listed twice"):
        open_source(str(src))


def test_skip_bad_episodes_packs_the_rest_and_check_reports_the_defect(tmp_path):
    src = _copy(tmp_path)
    s = open_source(str(src))
    bad = s.episodes[1]
    video = src / bad.videos[s.video_keys[0]].path
    users = [e.episode_index for e in s.episodes if bad.videos[s.video_keys[0]].path in {r.path for r in e.videos.values()}]
    video.write_bytes(b"")
    report = check(str(src))
    assert any("is empty (0 bytes)" in d for d in report.defects)
    assert _cli("check", str(src)).returncode == 1
    with pytest.raises(SourceError, match="is empty"):
        pack(str(src), str(tmp_path / "strict"), PackOptions(progress=False))
    r = _cli("pack", str(src), str(tmp_path / "out"), "--no-progress", "--skip-bad-episodes")
    assert r.returncode == 0, r.stderr
    m = Manifest.from_json((tmp_path / "out/manifest.json").read_text())
    assert [x.episode_index for x in m.skipped_episodes] == users
    assert m.total_episodes == len(s.episodes) - len(users)
    assert f"skipped episode {users[0]}" in r.stdout


def test_check_passes_the_shipped_fixtures():
    for name in ("lerobot_v3_av1", "lerobot_v3_images"):
        assert check(str(DATA / name)).defects == []


def test_a_source_clip_with_samples_out_of_file_order_packs_exactly(tmp_path):
    """Legal mp4s may store samples out of order; the packer's fast path cuts a clip as one span of
    the file, so such a file goes through FFmpeg's demuxer instead: the packed samples are still
    exactly LeRobotDataset's (before, the clip came out with no decodable frame and no error)."""
    from reader_helpers import assert_sample_equal, expected
    from test_sampletable import _samples_reversed

    from lerobot_wds import LeRobotShardDataset

    src = _copy(tmp_path)
    for mp4 in (src / "videos").rglob("*.mp4"):
        data = bytearray(mp4.read_bytes())
        _samples_reversed(data)
        mp4.write_bytes(bytes(data))
    pack(str(src), str(tmp_path / "out"), PackOptions(progress=False))
    js, npz = expected("lerobot_v3_av1", "plain")
    items = {int(i["index"]): i for i in LeRobotShardDataset(str(tmp_path / "out"), shuffle=False)}
    for index in js["indices"]:
        assert_sample_equal(items[index], index, js, npz)


def _edit_episodes_meta(src: Path, column: str, value) -> None:
    """Set ``column`` of episode 1's row in meta/episodes."""
    import pyarrow as pa

    path = next((src / "meta/episodes").rglob("*.parquet"))
    t = pq.read_table(path)
    values = t[column].to_pylist()
    values[1] = value
    pq.write_table(t.set_column(t.schema.get_field_index(column), column, pa.array(values, t.schema.field(column).type)), path)


@pytest.mark.parametrize("column,value", [("from_timestamp", float("nan")), ("to_timestamp", float("inf")),
                                          ("from_timestamp", -1.0)])
def test_a_timestamp_that_is_no_time_in_the_video_is_refused(tmp_path, column, value):
    src = _copy(tmp_path)
    _edit_episodes_meta(src, f"videos/observation.images.top/{column}", value)
    with pytest.raises(SourceError, match=rf"episode 1: missing or malformed column 'videos/observation\.images\.top/"
                                          rf"{column}' is {value}, not a time in the video"):
        open_source(str(src))


def test_a_timestamp_past_any_video_is_an_episode_error(tmp_path):
    """1e300 s is a number, but no seek can reach it: the episode cannot be cut (and is skipped
    with --skip-bad-episodes), not a traceback from FFmpeg's seek."""
    src = _copy(tmp_path)
    _edit_episodes_meta(src, "videos/observation.images.top/from_timestamp", 1e300)
    r = _cli("pack", str(src), str(tmp_path / "out"), "--no-progress", "--skip-bad-episodes")
    assert r.returncode == 0, r.stderr
    skipped = json.loads((tmp_path / "out/manifest.json").read_text())["skipped_episodes"]
    assert [s["episode_index"] for s in skipped] == [1] and "past the video's end" in skipped[0]["reason"]


def test_damaged_tasks_and_stats_are_named(tmp_path):
    src = _copy(tmp_path)
    tasks = src / "meta/tasks.parquet"
    t = pq.read_table(tasks)
    pq.write_table(t.drop_columns(["task_index"]), tasks)
    with pytest.raises(SourceError, match=r"tasks\.parquet: a row without a whole task_index"):
        open_source(str(src))
    pq.write_table(t, tasks)
    (src / "meta/stats.json").write_text("[1, 2]")
    with pytest.raises(SourceError, match=r"stats\.json: not an object of per-feature stats objects"):
        open_source(str(src))
