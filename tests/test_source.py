"""packer/source.py: LeRobot v3.0 metadata → episode records, selection, validation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lerobot_wds.packer.source import SourceError, open_source, parse_episodes, resolve_url

DATA = Path(__file__).parent / "data"


def test_av1_fixture_episodes_match_the_layout_table():
    s = open_source(str(DATA / "lerobot_v3_av1"))
    assert s.fps == 30 and s.video_keys == ["observation.images.top", "observation.images.wrist"]
    assert [e.length for e in s.episodes] == [45, 80, 12, 60, 90, 33]
    assert [e.dataset_from_index for e in s.episodes] == [0, 45, 125, 137, 197, 287]
    assert [e.data_path[-16:] for e in s.episodes] == ["file-000.parquet"] * 3 + ["file-001.parquet"] * 2 + ["file-002.parquet"]
    top = [(e.videos["observation.images.top"].path[-12:], e.videos["observation.images.top"].from_timestamp) for e in s.episodes]
    assert top == [("file-000.mp4", 0.0), ("file-001.mp4", 0.0), ("file-002.mp4", 0.0),
                   ("file-002.mp4", pytest.approx(0.4)), ("file-003.mp4", 0.0), ("file-004.mp4", 0.0)]
    wrist = [e.videos["observation.images.wrist"] for e in s.episodes]
    assert [w.path[-12:] for w in wrist] == ["file-000.mp4"] * 3 + ["file-001.mp4"] * 3
    assert [round(w.from_timestamp, 4) for w in wrist] == [0.0, 1.5, 4.1667, 0.0, 2.0, 5.0]
    assert s.tasks == {0: "pick up the red cube and place it in the bin", 1: "open the top drawer",
                       2: "fold the towel in half"}
    assert s.episodes[1].tasks == ("open the top drawer",)
    assert s.provenance() == {"path": str(DATA / "lerobot_v3_av1"), "revision": None, "codebase_version": "v3.0"}


def test_image_fixture_keeps_image_feature_as_a_frame_column():
    s = open_source(str(DATA / "lerobot_v3_images"))
    assert s.video_keys == ["observation.images.front"]
    assert "observation.images.gripper" in s.frame_columns
    assert "observation.images.front" not in s.frame_columns


def test_parse_episodes():
    have = list(range(300))
    assert parse_episodes("0-3,250", have) == [0, 1, 2, 3, 250]
    assert parse_episodes(" 5 , 2-2 ,5", have) == [2, 5]
    assert parse_episodes(None, [3, 1]) == [1, 3]
    with pytest.raises(SourceError, match=r"\[300, 301\].*300 episodes"):
        parse_episodes("299-301", have)
    for bad in ("a", "3-1", "1-2-3"):
        with pytest.raises(SourceError, match="--episodes"):
            parse_episodes(bad, have)


def test_hub_urls():
    assert resolve_url("lerobot/pusht", "v3.0") == ("hf://datasets/lerobot/pusht@v3.0", "lerobot/pusht")
    assert resolve_url("hf://datasets/lerobot/pusht", None) == ("hf://datasets/lerobot/pusht", "lerobot/pusht")
    assert resolve_url(str(DATA / "lerobot_v3_av1"), None) == (str(DATA / "lerobot_v3_av1"), None)


def test_v2_dataset_is_refused_naming_info_json(tmp_path):
    root = shutil.copytree(DATA / "lerobot_v3_av1" / "meta", tmp_path / "ds" / "meta")
    info = json.loads((root / "info.json").read_text())
    info["codebase_version"] = "v2.1"
    (root / "info.json").write_text(json.dumps(info))
    with pytest.raises(SourceError, match=r"meta/info\.json: codebase_version 'v2.1'.*v3.0"):
        open_source(str(tmp_path / "ds"))


def test_missing_meta_names_the_file(tmp_path):
    (tmp_path / "meta").mkdir()
    with pytest.raises(SourceError, match=r"meta/info\.json: missing"):
        open_source(str(tmp_path))
