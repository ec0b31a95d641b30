"""packer/cli.py: `lerobot-wds pack | inspect | verify`, end to end on the fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest
from torchcodec.decoders import VideoDecoder

from lerobot_wds.packer.cli import main
from lerobot_wds.format import Manifest

DATA = Path(__file__).parent / "data"


def test_pack_inspect_verify(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["pack", str(DATA / "lerobot_v3_images"), str(out), "--shard-size", "200KB", "--no-progress"]) == 0
    assert "packed 4 episodes, 80 frames into" in capsys.readouterr().out
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "episodes  4   frames 80   fps 10" in text
    assert "observation.images.front: av1 yuv420p" in text and "observation.images.gripper: image" in text
    assert main(["verify", str(out)]) == 0
    assert "verified: OK" in capsys.readouterr().out


def test_the_program_exits_with_the_commands_status_whatever_the_teardown_does(tmp_path):
    # A native library that aborts in the interpreter's teardown (as Arrow's thread pools can:
    # apache/arrow#34314) must neither replace the command's exit status nor lose its output.
    program = ("import atexit, os, sys; atexit.register(os.abort); "  # a teardown that aborts
               "from lerobot_wds.packer.cli import run; run()")

    def lerobot_wds(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", program, *args], capture_output=True, text=True)

    ok = lerobot_wds("check", str(DATA / "lerobot_v3_av1"))
    assert ok.returncode == 0 and "checked 6 episodes, 320 frames, 14 files: OK" in ok.stdout
    failed = lerobot_wds("verify", str(tmp_path / "nothing"))
    assert failed.returncode == 1 and "manifest.json not found" in failed.stderr


def test_verify_finds_a_damaged_shard(tmp_path, capsys):
    out = tmp_path / "out"
    main(["pack", str(DATA / "lerobot_v3_av1"), str(out), "--episodes", "1-2", "--no-progress"])
    shard = out / "shard-000000.tar"
    data = bytearray(shard.read_bytes())
    data[2000] ^= 0xFF
    shard.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["verify", str(out)]) == 1
    assert "shard-000000.tar: size/sha256 differ" in capsys.readouterr().out


@pytest.mark.skipif(os.geteuid() != 0, reason="SVT-AV1 takes real-time scheduling only where it may: as root")
def test_av1_reencode_gives_back_the_real_time_scheduling_svt_av1_takes(tmp_path):
    """SVT-AV1, run as root, makes the thread that opens an AV1 encoder real-time (SCHED_FIFO 99)
    and leaves it so; every process started afterwards inherits it, and on few cores such
    processes can starve everything (packer/scheduling.py). After ``pack --codec av1``, which
    writes one worker's shards in this process, this process and a process it starts are
    scheduled as before."""
    before = os.sched_getscheduler(0), os.sched_getparam(0)
    assert before[0] != os.SCHED_FIFO
    args = ["pack", str(DATA / "lerobot_v3_av1"), str(tmp_path / "out"), "--episodes", "1,3", "--codec", "av1",
            "--workers", "1", "--no-progress"]
    assert main(args) == 0
    assert (os.sched_getscheduler(0), os.sched_getparam(0)) == before
    child = subprocess.run([sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"],
                           capture_output=True, text=True, check=True)
    assert int(child.stdout) == before[0]


def test_episode_selection_and_reencode_options(tmp_path):
    out = tmp_path / "out"
    args = ["pack", str(DATA / "lerobot_v3_av1"), str(out), "--episodes", "2,4", "--codec", "h264",
            "--gop", "10", "--crf", "28", "--size", "48x64", "--no-progress"]
    assert main(args) == 0
    m = Manifest.from_json((out / "manifest.json").read_text())
    assert [e.episode_index for s in m.shards for e in s.episodes] == [2, 4]
    assert all(v == {"codec": "h264", "pix_fmt": "yuv420p", "width": 64, "height": 48, "reencoded": True}
               for v in m.videos.values())
    entry = m.shards[0].episodes[0]
    with open(out / m.shards[0].name, "rb") as f:
        f.seek(entry.members["meta.msgpack"].offset)
        meta = msgpack.unpackb(f.read(entry.members["meta.msgpack"].size))
        ref = entry.members["observation.images.top.mp4"]
        f.seek(ref.offset)
        clip = VideoDecoder(f.read(ref.size))
    assert meta["clips"]["observation.images.top"]["lead_in"] == 0
    assert len(clip) == 12 and tuple(clip[0].shape) == (3, 48, 64)
    assert main(["verify", str(out)]) == 0


def test_user_errors_print_one_line_and_exit_1(tmp_path, capsys):
    root = tmp_path / "v2"
    (root / "meta").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps({"codebase_version": "v2.1"}))
    assert main(["pack", str(root), str(tmp_path / "out"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "codebase_version 'v2.1'" in err and "Traceback" not in err
    assert main(["pack", str(DATA / "lerobot_v3_av1"), str(tmp_path / "o"), "--episodes", "7-9"]) == 1
    assert "episodes [7, 8, 9] are not in the dataset" in capsys.readouterr().err


def test_pack_to_s3_then_verify_there(s3_server, tmp_path, capsys):
    """`pack SRC s3://…` with --storage-option uploads whole shards; verify reads them back over S3."""
    from testkit.servers import s3_options

    opts = s3_options(s3_server.endpoint_url)
    flags = [x for k, v in opts.items() if isinstance(v, str) for x in ("--storage-option", f"{k}={v}")]
    out = "s3://lerobot-wds-test/packer-cli"
    assert main(["pack", str(DATA / "lerobot_v3_av1"), out, "--shard-size", "150KB", "--no-progress", *flags]) == 0
    assert main(["verify", out, *flags]) == 0
    assert "verified: OK" in capsys.readouterr().out
    import s3fs

    fs = s3fs.S3FileSystem(**opts)
    names = sorted(p.rsplit("/", 1)[1] for p in fs.ls(out))
    assert names == [".lerobot-wds", "manifest.json"] + [f"shard-{i:06d}.tar" for i in range(5)]
