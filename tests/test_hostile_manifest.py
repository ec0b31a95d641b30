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
