"""packer/hub.py + source.py over HTTP: a loopback server stands in for the Hub (no network here).

The server logs every request with the bytes it sent, so these tests check what a pack really
fetched: only the files its episodes need, parts of a file shared with other episodes, and shards
byte-identical to packing the same directory locally.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from testkit.hub_server import HubServer, tree
from lerobot_wds.packer.hub import READ_BLOCK_BYTES, source_storage_options
from lerobot_wds.packer.pack import PackOptions, pack
from lerobot_wds.packer.source import open_source
from testkit.synthetic import write_dataset

DATA = Path(__file__).parent / "data"
QUIET = dict(progress=False)


@pytest.fixture(scope="module")
def av1_server():
    server = HubServer(DATA / "lerobot_v3_av1")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def many_per_file(tmp_path_factory):
    """16 episodes in one mp4 and one parquet (one row group per episode), served over HTTP."""
    root = write_dataset(tmp_path_factory.mktemp("src") / "ds", episodes=[60] * 16,
                         cameras={"observation.images.top": (96, 128)}, texture=1.0, state_dim=64)
    server = HubServer(root)
    yield root, server
    server.stop()


def test_remote_sources_get_a_small_read_block():
    assert source_storage_options("hf://datasets/a/b", {})["block_size"] == READ_BLOCK_BYTES
    assert source_storage_options("https://x/y", {"block_size": "4096"})["block_size"] == 4096
    assert "block_size" not in source_storage_options("/local/root", {})
    with pytest.raises(ValueError, match="block_size"):
        source_storage_options("http://x", {"block_size": "big"})


def test_pack_fetches_only_the_files_its_episodes_need(av1_server, tmp_path):
    """Episode 5 lives in data file-002, top file-004 and wrist file-001: no other data/video file is read."""
    before = len(av1_server.log)
    pack(av1_server.url, str(tmp_path / "remote"), PackOptions(episodes="5", **QUIET))
    touched = {r.path for r in av1_server.log[before:]}
    media = {p for p in touched if p.startswith(("data/", "videos/"))}
    assert media == {"data/chunk-000/file-002.parquet", "videos/observation.images.top/chunk-000/file-004.mp4",
                     "videos/observation.images.wrist/chunk-000/file-001.mp4"}
    pack(str(DATA / "lerobot_v3_av1"), str(tmp_path / "local"), PackOptions(episodes="5", **QUIET))
    assert (tmp_path / "remote/shard-000000.tar").read_bytes() == (tmp_path / "local/shard-000000.tar").read_bytes()


def test_pack_reads_part_of_a_file_many_episodes_share(many_per_file, tmp_path, monkeypatch):
    root, server = many_per_file
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # a temp dir of our own to watch
    mp4 = "videos/observation.images.top/chunk-000/file-000.mp4"
    parquet = "data/chunk-000/file-000.parquet"
    assert len(tree(root / "videos")) == 1 and len(tree(root / "data")) == 1
    before = len(server.log)
    out = tmp_path / "remote"
    m = pack(server.url, str(out), PackOptions(episodes="9", storage_options={"block_size": 16384}, **QUIET))
    fetched = {p: sum(r.end - r.start for r in server.log[before:] if r.path == p and r.method == "GET")
               for p in (mp4, parquet)}
    assert 0 < fetched[mp4] < 0.5 * (root / mp4).stat().st_size, fetched
    assert 0 < fetched[parquet] < 0.5 * (root / parquet).stat().st_size, fetched
    # the clip itself came as one exact range: a GET starting inside the file, past the header
    assert any(r.path == mp4 and 1000 < r.start and r.end < (root / mp4).stat().st_size for r in server.log[before:])
    # nothing left behind: no temp files beside the shards or in the temp dir
    assert tree(out) == {"manifest.json", "shard-000000.tar",
                         ".lerobot-wds/options.json", ".lerobot-wds/source.json", ".lerobot-wds/lock", ".lerobot-wds/shard-000000.tar.json"}
    assert os.listdir(tmp_path / "tmp") == []
    local = pack(str(root), str(tmp_path / "local"), PackOptions(episodes="9", **QUIET))
    assert m.shards == local.shards
    assert (out / "shard-000000.tar").read_bytes() == (tmp_path / "local/shard-000000.tar").read_bytes()


def test_open_source_over_http_matches_local(av1_server):
    remote, local = open_source(av1_server.url), open_source(str(DATA / "lerobot_v3_av1"))
    assert remote.episodes == local.episodes and remote.tasks == local.tasks and remote.stats == local.stats
    assert remote.fs.block_size == READ_BLOCK_BYTES


def test_missing_remote_file_names_it(tmp_path):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(DATA / "lerobot_v3_av1", root)
    (root / "videos/observation.images.wrist/chunk-000/file-001.mp4").unlink()
    server = HubServer(root)
    try:
        with pytest.raises(Exception, match="file-001.mp4"):
            pack(server.url, str(tmp_path / "out"), PackOptions(episodes="5", **QUIET))
    finally:
        server.stop()


@pytest.fixture(scope="module")
def hub_repo():
    """The AV1 fixture as Hub dataset repo ``lerobot-wds/av1`` behind the Hub API routes HfFileSystem uses."""
    server = HubServer(DATA / "lerobot_v3_av1", repo_id="lerobot-wds/av1")
    yield server
    server.stop()


@pytest.mark.parametrize("src", ["hf://datasets/lerobot-wds/av1", "lerobot-wds/av1"])
def test_hub_repo_through_hffilesystem(hub_repo, tmp_path, src):
    """The real hf:// code path (huggingface_hub's HfFileSystem), pointed at the loopback server."""
    before = len(hub_repo.log)
    m = pack(src, str(tmp_path / "hub"), PackOptions(episodes="5", revision="main",
                                                   storage_options={"endpoint": hub_repo.url}, **QUIET))
    assert m.source == {"codebase_version": "v3.0", "repo_id": "lerobot-wds/av1", "revision": "main"}
    media = {r.path for r in hub_repo.log[before:] if r.path.startswith(("data/", "videos/"))}
    assert media == {"data/chunk-000/file-002.parquet", "videos/observation.images.top/chunk-000/file-004.mp4",
                     "videos/observation.images.wrist/chunk-000/file-001.mp4"}
    pack(str(DATA / "lerobot_v3_av1"), str(tmp_path / "local"), PackOptions(episodes="5", **QUIET))
    assert (tmp_path / "hub/shard-000000.tar").read_bytes() == (tmp_path / "local/shard-000000.tar").read_bytes()
