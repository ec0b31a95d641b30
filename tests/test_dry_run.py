"""packer/dry_run.py + ``pack --dry-run``: prints the shards a pack would write and writes nothing."""

from __future__ import annotations

import re
from pathlib import Path

from testkit.hub_server import tree
from lerobot_wds.packer.cli import main
from lerobot_wds.packer.dry_run import describe_plan, episode_ranges
from lerobot_wds.packer.pack import PackOptions, dry_run, pack

AV1 = Path(__file__).parent / "data" / "lerobot_v3_av1"
OPTS = dict(shard_size=150_000, progress=False)


def test_episode_ranges():
    assert episode_ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert episode_ranges([4]) == "4" and episode_ranges([]) == ""


def test_describe_plan_totals():
    text = describe_plan("out", [("shard-000000.tar", [0, 1], 1_500_000), ("shard-000001.tar", [2], 500_000)])
    assert "shard-000000.tar" in text and "0-1" in text
    assert text.splitlines()[-1].startswith("dry run: would write 2 shard(s), ~2.00 MB, 3 episode(s) to out")


def _rows(text: str) -> list[tuple[str, float, int, str]]:
    rows = [re.fullmatch(r"(shard-\d+\.tar)\s+([\d.]+)\s+(\d+)\s+(\S*)", line) for line in text.splitlines()]
    return [(m[1], float(m[2]), int(m[3]), m[4]) for m in rows if m]


def test_dry_run_plans_what_pack_writes_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["pack", str(AV1), str(out), "--shard-size", "150000", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert not out.exists()
    rows = _rows(printed)
    m = pack(str(AV1), str(out), PackOptions(**OPTS))
    assert [r[0] for r in rows] == [s.name for s in m.shards]
    assert [r[3] for r in rows] == [episode_ranges([e.episode_index for e in s.episodes]) for s in m.shards]
    for (_, mb, n, _), s in zip(rows, m.shards):  # estimates within 2x of the real shard sizes
        assert n == len(s.episodes) and 0.5 < mb * 1e6 / s.bytes < 2.0


def test_dry_run_on_a_packed_out_says_what_is_kept(tmp_path):
    out = tmp_path / "out"
    pack(str(AV1), str(out), PackOptions(episodes="0-2", **OPTS))
    before = {p: (out / p).stat().st_mtime_ns for p in tree(out)}
    text = dry_run(str(AV1), str(out), PackOptions(append=True, **OPTS))
    assert {p: (out / p).stat().st_mtime_ns for p in tree(out)} == before
    rows = _rows(text)
    assert ",".join(r[3] for r in rows) in ("3-5", "3,4-5", "3-4,5", "3,4,5")
    assert "already there are kept" in text and "with 3 episode(s)" in text
    assert "would write 0 shard(s)" in dry_run(str(AV1), str(out), PackOptions(episodes="0-2", **OPTS))
