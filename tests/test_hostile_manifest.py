"""Hostile or damaged manifests on a real pack: refused before anything is opened or allocated."""

from __future__ import annotations

import json
import shutil

import pytest

from lerobot_wds import LeRobotShardDataset
from lerobot_wds.format import FormatError
from lerobot_wds.packer.verify import verify


def _copy_with(packed, tmp_path, edit):
    src = packed("lerobot_v3_av1")
    dst = tmp_path / "ds"
    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    edit(m)
    (dst / "manifest.json").write_text(json.dumps(m))
    return dst


def _first_episode(m):
    return m["shards"][0]["episodes"][0]


@pytest.mark.parametrize("name", ["../outside.tar", "/etc/passwd", "sub/shard-000000.tar", "shard-000000.tar/.."])
def test_shard_name_escaping_the_root_is_refused(packed, tmp_path, name):
    outside = tmp_path / "outside.tar"
    outside.write_bytes(b"secret")

    def edit(m):
        m["shards"][0]["name"] = name

    ds = _copy_with(packed, tmp_path, edit)
    with pytest.raises(FormatError, match="not allowed"):
        LeRobotShardDataset(str(ds))
    with pytest.raises(FormatError, match="not allowed"):
        verify(str(ds), decode=False)


@pytest.mark.parametrize("member", ["../x.mp4", "a/b.mp4"])
def test_member_name_with_separator_is_refused(packed, tmp_path, member):
    def edit(m):
        e = _first_episode(m)
        e["members"][member] = e["members"].pop("frames.arrow")

    with pytest.raises(FormatError, match="not allowed"):
        LeRobotShardDataset(str(_copy_with(packed, tmp_path, edit)))


@pytest.mark.parametrize("offset,size", [(0, 10**15), (-512, 100), (10**15, 1)])
def test_byte_range_outside_the_shard_is_refused_before_any_read(packed, tmp_path, offset, size):
    def edit(m):
        _first_episode(m)["members"]["frames.arrow"] = [offset, size]

    ds = _copy_with(packed, tmp_path, edit)
    with pytest.raises(FormatError, match=r"shard-000000.tar, episode \d+: member frames.arrow .* outside"):
        LeRobotShardDataset(str(ds))
    with pytest.raises(FormatError, match="outside"):
        verify(str(ds), decode=False)


def test_episode_listed_twice_is_refused(packed, tmp_path):
    def edit(m):
        m["shards"][-1]["episodes"].append(dict(_first_episode(m)))

    ds = _copy_with(packed, tmp_path, edit)
    with pytest.raises(FormatError, match="listed twice"):
        LeRobotShardDataset(str(ds))
    with pytest.raises(FormatError, match="listed twice"):
        verify(str(ds), decode=False)


@pytest.mark.parametrize("offset,size", [(0, 10**15), (-512, 100)])
def test_on_error_skip_leaves_out_an_episode_with_a_damaged_range(packed, tmp_path, caplog, offset, size):
    """on_error="skip": the damaged entry's episode is left out (logged, counted), every frame of the
    others comes out, and nothing of it is read or allocated."""
    bad = {}

    def edit(m):
        e = _first_episode(m)
        bad.update(index=e["episode_index"], length=e["length"], total=sum(
            x["length"] for s in m["shards"] for x in s["episodes"]))
        e["members"]["frames.arrow"] = [offset, size]

    ds = LeRobotShardDataset(str(_copy_with(packed, tmp_path, edit)), on_error="skip", shuffle=False)
    assert ds.skipped == 1 and ds.io_stats()["skipped"] == 1
    assert f"episode {bad['index']}: member frames.arrow" in caplog.text
    frames = [(int(s["episode_index"]), int(s["frame_index"])) for s in ds]
    assert len(frames) == len(set(frames)) == bad["total"] - bad["length"] == ds.num_frames
    assert bad["index"] not in {e for e, _ in frames}
    # Names that could point outside the root stay fatal, whatever on_error says.
    with pytest.raises(FormatError, match="not allowed"):
        LeRobotShardDataset(str(_copy_with(packed, tmp_path / "n", lambda m: m["shards"][0].update(name="../x.tar"))),
                            on_error="skip")
