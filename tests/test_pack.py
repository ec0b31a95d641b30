"""packer/pack.py + packer/task.py: fixtures pack into shards that are exact, deterministic and resumable."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import msgpack
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
import webdataset as wds
from torchcodec.decoders import VideoDecoder

from lerobot_wds.packer.clip import ClipCutter, ClipError, ClipRequest
from lerobot_wds.packer.pack import PackError, PackOptions, pack
from lerobot_wds.packer.source import SourceError, open_source
from lerobot_wds import LeRobotShardDataset
from lerobot_wds.format import Manifest
from reader_helpers import assert_sample_equal, expected

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent
FIXTURES = ["lerobot_v3_av1", "lerobot_v3_images"]
QUIET = dict(progress=False)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """Each fixture packed once into several shards: fixture name → output directory."""
    out = {}
    for name in FIXTURES:
        out[name] = tmp_path_factory.mktemp(name)
        pack(str(DATA / name), str(out[name]), PackOptions(shard_size=150_000, **QUIET))
    return out


def _manifest(out: Path) -> Manifest:
    return Manifest.from_json((out / "manifest.json").read_text())


def _member(out: Path, shard: str, ref) -> bytes:
    with open(out / shard, "rb") as f:
        f.seek(ref.offset)
        return f.read(ref.size)


@pytest.mark.parametrize("name", FIXTURES)
def test_packed_fixture_is_exact(packed, name):
    """Every clip frame decodes bit-identical to the source; tabular rows equal the source parquet."""
    out, source = packed[name], open_source(str(DATA / name))
    m = _manifest(out)
    assert len(m.shards) > 1 and m.total_episodes == len(source.episodes)
    assert m.total_frames == sum(e.length for e in source.episodes)
    assert m.features == source.features and m.fps == source.fps and m.tasks == source.tasks
    assert set(m.videos) == set(source.video_keys) and all(v["codec"] == "av1" for v in m.videos.values())
    records = {e.episode_index: e for e in source.episodes}
    decoders = {}
    for shard in m.shards:
        for entry in shard.episodes:
            src = records[entry.episode_index]
            meta = msgpack.unpackb(_member(out, shard.name, entry.members["meta.msgpack"]))
            assert (meta["length"], meta["dataset_from_index"]) == (src.length, src.dataset_from_index)
            table = pa.ipc.open_file(_member(out, shard.name, entry.members["frames.arrow"])).read_all()
            raw = pq.read_table(source.path(src.data_path))
            want = raw.filter(pc.equal(raw["episode_index"], src.episode_index)).select(source.frame_columns)
            assert table.to_pylist() == want.to_pylist()
            for key in source.video_keys:
                ref = src.videos[key]
                dec = decoders.setdefault(ref.path, VideoDecoder(source.path(ref.path), seek_mode="exact"))
                start = round(ref.from_timestamp * source.fps)
                clip = VideoDecoder(_member(out, shard.name, entry.members[f"{key}.mp4"]), seek_mode="exact")
                lead_in = meta["clips"][key]["lead_in"]
                got = clip.get_frames_at([lead_in + i for i in range(src.length)]).data
                assert torch.equal(got, dec.get_frames_at([start + i for i in range(src.length)]).data)


@pytest.mark.parametrize("name", FIXTURES)
def test_plain_webdataset_sees_one_sample_per_episode(packed, name):
    out = packed[name]
    m = _manifest(out)
    urls = [str(out / s.name) for s in m.shards]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert [s["__key__"] for s in samples] == [f"episode_{e.episode_index:06d}" for s in m.shards for e in s.episodes]
    for s in samples:
        assert {"meta.msgpack", "frames.arrow"} <= set(s) and sum(k.endswith(".mp4") for k in s) == len(m.videos)


def _tree(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def test_packing_twice_is_byte_identical_across_worker_counts(tmp_path, packed):
    pack(str(DATA / "lerobot_v3_av1"), str(tmp_path / "b"), PackOptions(shard_size=150_000, workers=2, **QUIET))
    assert _tree(tmp_path / "b") == _tree(packed["lerobot_v3_av1"])


def test_rerun_skips_verified_shards_repacks_damaged_and_refuses_other_options(tmp_path, caplog):
    src, out = str(DATA / "lerobot_v3_av1"), tmp_path / "out"
    opts = PackOptions(shard_size=150_000, **QUIET)
    pack(src, str(out), opts)
    before = _tree(out)
    damaged = out / "shard-000001.tar"
    damaged.write_bytes(damaged.read_bytes()[:-1024])
    with caplog.at_level(logging.INFO, logger="lerobot_wds.packer.pack"):
        pack(src, str(out), opts)
    assert "4 of 5 shards already complete" in caplog.text
    assert _tree(out) == before
    (out / ".lerobot-wds" / "shard-000001.tar.json").write_text("[" * 100_000)  # a record json cannot parse
    pack(src, str(out), opts)  # that shard is packed again
    assert _tree(out) == before
    with pytest.raises(PackError, match=r"different shard_size.*empty OUT"):
        pack(src, str(out), PackOptions(shard_size=1, **QUIET))
    with pytest.raises(PackError, match=r"different episodes"):
        pack(src, str(out), PackOptions(shard_size=150_000, episodes="0-2", **QUIET))
    options = out / ".lerobot-wds" / "options.json"
    for damage in ("{cut sho", "[]"):  # a truncated write, or other JSON: named, with what to do
        options.write_text(damage)
        with pytest.raises(PackError, match=r"options.json: damaged .*delete OUT"):
            pack(src, str(out), opts)


def _copy(tmp_path: Path, name: str = "lerobot_v3_av1") -> Path:
    return shutil.copytree(DATA / name, tmp_path / "src")


def _shorter_video(root: Path) -> None:
    """Replace top file-004.mp4 (episode 5, 33 frames) with its first 20 frames."""
    p = root / "videos/observation.images.top/chunk-000/file-004.mp4"
    data, _ = ClipCutter(str(p), str(p), 30).cut(ClipRequest(5, 0.0, 20))
    p.write_bytes(data)


def _truncate(root: Path) -> None:
    p = root / "videos/observation.images.wrist/chunk-000/file-001.mp4"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _rows(root: Path) -> None:
    p = root / "data/chunk-000/file-002.parquet"
    t = pq.read_table(p)
    pq.write_table(t.slice(1), p)


def _retype(root: Path, name: str, rows: Callable[[list], list], type_: pa.DataType) -> None:
    """Rewrite column ``name`` of every data file as ``type_``, its rows mapped by ``rows``."""
    for p in sorted((root / "data").rglob("*.parquet")):
        t = pq.read_table(p)
        i = t.schema.get_field_index(name)
        col = pa.array(rows(t.column(i).to_pylist()), type=type_)
        pq.write_table(t.set_column(i, pa.field(name, type_), col), p)


def _ragged(root: Path) -> None:
    """Episode 5's observation.state as variable-length lists, its first row one value short."""
    p = root / "data/chunk-000/file-002.parquet"
    t = pq.read_table(p)
    i = t.schema.get_field_index("observation.state")
    rows = t.column(i).to_pylist()
    rows[0] = rows[0][:-1]
    pq.write_table(t.set_column(i, pa.field("observation.state", pa.list_(pa.float32())),
                                pa.array(rows, pa.list_(pa.float32()))), p)


def _missing(root: Path) -> None:
    (root / "videos/observation.images.top/chunk-000/file-003.mp4").unlink()


def _v2(root: Path) -> None:
    info = json.loads((root / "meta/info.json").read_text())
    info["codebase_version"] = "v2.1"
    (root / "meta/info.json").write_text(json.dumps(info))


@pytest.mark.parametrize("damage, error, pattern", [
    (_v2, SourceError, r"info\.json: codebase_version 'v2\.1'"),
    (_missing, SourceError, r"episode 4: video .*top .*top/chunk-000/file-003\.mp4 is missing"),
    (_rows, SourceError, r"episode 5: data file .*file-002\.parquet has 32 rows.*length 33"),
    (_shorter_video, ClipError, r"episode 5: video .*top/chunk-000/file-004\.mp4 .*shorter than its episode"),
    (_truncate, ClipError, r"episode 4: video .*wrist/chunk-000/file-001\.mp4 is truncated or damaged"),
    (_ragged, SourceError, r"episode 5: data file .*file-002\.parquet column 'observation\.state' of type "
                           r"list<.*> does not convert to the declared fixed_size_list<.*>\[6\]"),
])
def test_bad_inputs_name_episode_and_file_and_mark_nothing_complete(tmp_path, damage, error, pattern):
    root = _copy(tmp_path)
    damage(root)
    out = tmp_path / "out"
    with pytest.raises(error, match=pattern):
        pack(str(root), str(out), PackOptions(shard_size=1, **QUIET))
    assert not (out / "manifest.json").exists()
    done = sorted(p.name for p in (out / ".lerobot-wds").glob("shard-*.json")) if out.exists() else []
    shards = sorted(p.name for p in out.glob("shard-*.tar")) if out.exists() else []
    assert [d[: -len(".json")] for d in done] == shards  # only verified-complete shards carry the name
    bad_episode = int(pattern.split("episode ")[1].split(":")[0]) if "episode" in pattern else 0
    assert f"shard-{bad_episode:06d}.tar" not in shards


def test_source_columns_of_other_types_than_declared_become_the_declared_types(tmp_path):
    """A dataset whose parquet stores a float32 feature as float64 lists and an int64 one as int32:
    LeRobotDataset casts them to the declared features, and so does the packer, so the samples are
    lerobot's own (the fixture's expected values, dtypes included)."""
    root = _copy(tmp_path)
    _retype(root, "observation.state", lambda rows: rows, pa.list_(pa.float64()))
    _retype(root, "index", lambda rows: rows, pa.int32())
    out = tmp_path / "out"
    pack(str(root), str(out), PackOptions(shard_size=150_000, **QUIET))
    m = Manifest.from_json((out / "manifest.json").read_text())
    ref = m.shards[0].episodes[0].members["frames.arrow"]
    with open(out / m.shards[0].name, "rb") as f:
        f.seek(ref.offset)
        schema = pa.ipc.open_file(pa.BufferReader(f.read(ref.size))).schema
    assert schema.field("observation.state").type == pa.list_(pa.float32(), 6)
    assert schema.field("index").type == pa.int64()
    js, npz = expected("lerobot_v3_av1", "plain")
    items = {int(i["index"]): i for i in LeRobotShardDataset(str(out), shuffle=False)}
    assert len(items) == 320
    for index in js["indices"]:
        assert_sample_equal(items[index], index, js, npz)


def _cli(src: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "lerobot_wds.packer.cli", "pack", str(src), str(out), "--shard-size", "1", "--no-progress"]


def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_result(tmp_path):
    """A real `pack` subprocess blocks on its last shard's video (a FIFO), is SIGKILLed, then resumes."""
    root = _copy(tmp_path)
    reference = tmp_path / "reference"
    pack(str(root), str(reference), PackOptions(shard_size=1, **QUIET))
    video = root / "videos/observation.images.top/chunk-000/file-004.mp4"  # only episode 5 (last shard)
    saved = video.read_bytes()
    video.unlink()
    os.mkfifo(video)
    out = tmp_path / "out"
    proc = subprocess.Popen(_cli(root, out), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not (out / ".lerobot-wds/shard-000004.tar.json").exists():
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline, "packer made no progress"
        time.sleep(0.05)
    time.sleep(0.2)
    assert proc.poll() is None  # blocked opening the FIFO for shard 5
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    assert sorted(p.name for p in out.glob("shard-*.tar")) == [f"shard-{i:06d}.tar" for i in range(5)]
    video.unlink()
    video.write_bytes(saved)
    # The FIFO became a file: the source fingerprint taken at the start names it and the re-run refuses.
    refused = subprocess.run(_cli(root, out), cwd=REPO, capture_output=True, text=True)
    assert refused.returncode == 1 and "source changed" in refused.stderr and "file-004.mp4" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    (out / ".lerobot-wds/source.json").unlink()  # forget the fingerprint: the resume itself must still be exact
    rerun = subprocess.run(_cli(root, out), cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "5 of 6 shards already complete" in rerun.stderr
    assert _tree(out) == _tree(reference)
    assert not list(out.glob("*.tmp-*"))


def test_fsspec_source_and_output_give_the_same_bytes_as_local(packed):
    """Source read and shards written through fsspec (memory://) equal the local pack byte for byte."""
    import fsspec

    fs = fsspec.filesystem("memory")
    for p in (DATA / "lerobot_v3_av1").rglob("*"):
        if p.is_file():
            fs.pipe_file(f"/src/{p.relative_to(DATA / 'lerobot_v3_av1')}", p.read_bytes())
    try:
        pack("memory://src", "memory://out", PackOptions(shard_size=150_000, **QUIET))
        local = packed["lerobot_v3_av1"]
        for name, data in _tree(local).items():
            got = fs.cat_file(f"/out/{name}")
            if name == "manifest.json":  # the source is named differently; everything else is equal
                a, b = json.loads(got), json.loads(data)
                assert a.pop("source") == {"path": "memory://src", "revision": None, "codebase_version": "v3.0"}
                b.pop("source")
                assert a == b
            else:
                assert got == data, name
        assert not [p for p in fs.find("/out") if ".tmp-" in p]
    finally:
        fs.rm("/src", recursive=True)
        fs.rm("/out", recursive=True)
