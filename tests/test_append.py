"""packer/append.py: ``pack --append`` adds shards, keeps old ones byte-identical, and a reader opened
on the old manifest keeps working."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from testkit.hub_server import tree
from lerobot_wds.packer.append import AppendError, check_fingerprint, next_shard_index, to_append
from lerobot_wds.packer.cli import main
from lerobot_wds.packer.pack import PackError, PackOptions, pack
from lerobot_wds.reader import LeRobotShardDataset
from lerobot_wds.format import Manifest

AV1 = Path(__file__).parent / "data" / "lerobot_v3_av1"
OPTS = dict(shard_size=150_000, progress=False)


def _bytes(root: Path) -> dict[str, bytes]:
    return {p: (root / p).read_bytes() for p in tree(root) if p.startswith("shard-")}


@pytest.fixture
def first(tmp_path) -> tuple[Path, Manifest]:
    out = tmp_path / "out"
    return out, pack(str(AV1), str(out), PackOptions(episodes="0-2", **OPTS))


def test_append_adds_shards_and_an_old_reader_keeps_working(first, tmp_path):
    out, old = first
    reader = LeRobotShardDataset(str(out), seed=0)
    old_bytes = _bytes(out)
    new = pack(str(AV1), str(out), PackOptions(append=True, **OPTS))  # all episodes: 3-5 are new
    assert sorted(e.episode_index for s in new.shards for e in s.episodes) == list(range(6))
    assert new.shards[: len(old.shards)] == old.shards  # names, sizes, sha256 unchanged
    assert {k: v for k, v in _bytes(out).items() if k in old_bytes} == old_bytes
    assert Manifest.from_json((out / "manifest.json").read_text()) == new
    # the reader opened before the append still reads exactly its episodes, frame by frame
    seen = [(int(x["episode_index"]), int(x["frame_index"])) for x in reader]
    assert sorted(seen) == [(e, f) for e, n in ((0, 45), (1, 80), (2, 12)) for f in range(n)]
    # appended shards hold what a fresh pack of those episodes writes
    fresh = pack(str(AV1), str(tmp_path / "fresh"), PackOptions(episodes="3-5", **OPTS))
    added = new.shards[len(old.shards):]
    assert [(s.bytes, s.sha256, s.episodes) for s in added] == [(s.bytes, s.sha256, s.episodes) for s in fresh.shards]
    assert added[0].name == f"shard-{len(old.shards):06d}.tar"


def test_append_with_nothing_new_writes_nothing(first):
    out, old = first
    before = {p: (out / p).stat().st_mtime_ns for p in tree(out)}
    assert pack(str(AV1), str(out), PackOptions(episodes="1-2", append=True, **OPTS)) == old
    assert {p: (out / p).stat().st_mtime_ns for p in tree(out)} == before


def test_interrupted_append_resumes(first):
    """Killed after one new shard but before the manifest: the re-run keeps that shard and finishes."""
    out, old = first
    old_manifest = (out / "manifest.json").read_bytes()
    new = pack(str(AV1), str(out), PackOptions(append=True, **OPTS))
    added = [s.name for s in new.shards[len(old.shards):]]
    assert len(added) > 1
    (out / "manifest.json").write_bytes(old_manifest)
    (out / added[-1]).unlink()
    kept = (out / added[0]).stat().st_mtime_ns
    assert pack(str(AV1), str(out), PackOptions(append=True, **OPTS)) == new
    assert (out / added[0]).stat().st_mtime_ns == kept


def test_append_refusals(first, tmp_path):
    out, _ = first
    with pytest.raises(AppendError, match="shard_size"):
        pack(str(AV1), str(out), PackOptions(append=True, shard_size=999_999, progress=False))
    with pytest.raises(AppendError, match="nothing to append to"):
        pack(str(AV1), str(tmp_path / "empty"), PackOptions(append=True, **OPTS))
    pack(str(AV1), str(out), PackOptions(episodes="3", append=True, **OPTS))
    with pytest.raises(PackError, match="add --append"):
        pack(str(AV1), str(out), PackOptions(**OPTS))
    other = tmp_path / "other"
    shutil.copytree(AV1, other)
    info = (other / "meta/info.json").read_text().replace('"fps": 30', '"fps": 15')
    (other / "meta/info.json").write_text(info)
    with pytest.raises(AppendError, match="source"):
        pack(str(other), str(out), PackOptions(append=True, **OPTS))


def test_cli_append(first, capsys):
    out, _ = first
    assert main(["pack", str(AV1), str(out), "--append", "--shard-size", "150000", "--no-progress"]) == 0
    assert "packed 6 episodes" in capsys.readouterr().out


def test_pure_helpers(first):
    _, m = first
    assert to_append([0, 1, 2, 3, 5], m) == [3, 5]
    assert next_shard_index(m) == len(m.shards)
    base = {"source": {"path": "x", "revision": None}, "episodes": [0], "shard_size": 1}
    check_fingerprint(base, {**base, "episodes": [1], "source": {"path": "x", "revision": "v2"}}, "out")
    with pytest.raises(AppendError, match="source"):
        check_fingerprint(base, {**base, "source": {"path": "y", "revision": None}}, "out")
