"""Hostile or damaged manifests on a real pack: refused before anything is opened or allocated."""

from __future__ import annotations

import json
import re
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


def _set(path, value):
    """An edit setting the manifest's value at ``path`` (keys and list indices) to ``value``."""
    def edit(m):
        *parents, last = path
        node = m
        for key in parents:
            node = node[key]
        node[last] = value
    return edit


_TOP = "observation.images.top"


@pytest.mark.parametrize("edit,message", [
    (_set(["features"], []), "'features' is list, not a JSON object"),
    (_set(["features", "action"], "float32"), "feature 'action' is str, not a JSON object"),
    (_set(["features", "action", "shape"], 6), "feature 'action' has shape 6, not a list of sizes"),
    (_set(["fps"], 0), "'fps' 0 is not a positive whole frame rate"),
    (_set(["fps"], -30), "'fps' -30 is not a positive whole frame rate"),
    (_set(["source"], "here"), "'source' is str, not a JSON object"),
    (_set(["tasks"], ["a task"]), "'tasks' is list, not a JSON object"),
    (_set(["tasks", "0"], ["a task"]), "task '0' is list, not a string"),
    (_set(["videos"], []), "'videos' is list, not a JSON object"),
    (_set(["videos", _TOP, "width"], "abc"), f"videos entry '{_TOP}' has width 'abc'"),
    (_set(["videos", _TOP, "width"], -5), f"videos entry '{_TOP}' has width -5"),
    (_set(["videos", _TOP, "height"], 20000), f"videos entry '{_TOP}' has height 20000, not a size from 1 to 16384"),
    (_set(["feature_order"], "action"), "'feature_order' 'action' is not a list"),
    (_set(["robot_type"], {"a": 1}), "'robot_type' {'a': 1} is not a string"),
    (_set(["shards", 0, "episodes", 0, "members"], []), "'list' object has no attribute 'items'"),
    (_set(["shards", 0, "episodes", 0, "length"], 1e309), "cannot convert float infinity to integer"),
])
def test_a_malformed_field_is_a_manifest_error_naming_it(packed, tmp_path, edit, message):
    """A field of the wrong type or range is refused when the manifest is read, naming the file and
    the field, never a Python error from deep inside the reader (or a batch sized by a lie)."""
    ds = _copy_with(packed, tmp_path, edit)
    with pytest.raises(FormatError, match=r"manifest.json: malformed manifest \(.*" + re.escape(message)):
        LeRobotShardDataset(str(ds), batch_size=4)


@pytest.mark.parametrize("text,message", [
    ("[" * 100_000, "maximum recursion depth exceeded"),
    ('{"format": ' + "9" * 5000 + "}", "Exceeds the limit"),
    (b"\xff\xfe{}", "Expecting value"),
])
def test_a_manifest_json_cannot_parse_is_a_manifest_error(packed, tmp_path, text, message):
    """What json refuses besides bad syntax (nesting past Python's stack, a number past its digit
    limit) is the same named error as bad syntax, not a RecursionError or a bare ValueError."""
    ds = _copy_with(packed, tmp_path, lambda m: None)
    (ds / "manifest.json").write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(FormatError, match=r"manifest.json: not valid JSON \(.*" + message):
        LeRobotShardDataset(str(ds))


def test_a_manifest_of_mostly_objects_and_arrays_is_refused_before_parsing(packed, tmp_path):
    """Python holds an empty ``{}`` in 64 bytes: a text of them would parse into 25 times its size
    (1 GiB into 25 GiB), so it is refused from a count of its braces and brackets, naming the file;
    a real manifest (the copy made here, and every other test's) is far under that count."""
    ds = _copy_with(packed, tmp_path, lambda m: None)
    assert LeRobotShardDataset(str(ds)).meta.manifest.total_episodes > 0
    (ds / "manifest.json").write_text('{"format": "lerobot-wds", "shards": [' + "{}," * 200_000 + "{}]}")
    with pytest.raises(FormatError, match=r"manifest.json: 200,00\d JSON objects and arrays in [\d,]+ bytes"):
        LeRobotShardDataset(str(ds))


def test_a_version_2_member_without_its_checksum_is_refused(packed, tmp_path):
    """Only version 1 packs are read unchecked: a version 2 manifest that drops a member's XXH3
    would have its bytes read unchecked. Refused, or with on_error="skip" that episode left out."""
    def edit(m):
        del _first_episode(m)["members"]["frames.arrow"][2]

    ds = _copy_with(packed, tmp_path, edit)
    with pytest.raises(FormatError, match=r"episode 0: member frames.arrow has no checksum, which format version 2 "
                                          r"records for every member"):
        LeRobotShardDataset(str(ds))
    skipping = LeRobotShardDataset(str(ds), on_error="skip")
    assert 0 not in skipping.meta.episodes["episode_index"] and skipping.num_episodes > 0
