"""packer/task.py: the early-writeback file wrapper passes bytes through unchanged and flushes as it goes."""

from __future__ import annotations

import os

from lerobot_wds.packer.task import EarlyWriteback


def test_early_writeback_writes_everything_in_order_and_marks_flushed_ranges(tmp_path):
    chunks = [os.urandom(3 << 20), memoryview(os.urandom(2 << 20)), b"tail"]
    path = tmp_path / "shard.tar"
    with open(path, "wb") as f:
        w = EarlyWriteback(f, str(path), every=4 << 20)
        assert [w.write(c) for c in chunks] == [len(c) for c in chunks]
        assert w.mark == (5 << 20)  # writeback asked for once 4 MiB had piled up: after the second chunk
        assert os.path.getsize(path) >= w.mark  # what was handed to the kernel is in the file already
    assert path.read_bytes() == b"".join(chunks)


def test_shard_is_renamed_into_place_with_or_without_the_flush(tmp_path, monkeypatch):
    """Local OUT: the finished tar is moved (same inode), never copied, whether or not it is flushed."""
    import lerobot_wds.packer.task as task
    from lerobot_wds.packer.pack import PackOptions, pack
    from testkit.synthetic import write_dataset

    src = write_dataset(tmp_path / "src", episodes=[5, 4], cameras={"cam": (32, 48)})
    renamed = []
    real = os.replace
    monkeypatch.setattr(task.os, "replace", lambda a, b: (renamed.append(b), real(a, b)))
    shas = []
    for durable in (True, False):
        m = pack(str(src), str(tmp_path / f"out{durable}"), PackOptions(progress=False, durable=durable))
        shas.append([s.sha256 for s in m.shards])
    assert [os.path.basename(p) for p in renamed if p.endswith(".tar")] == ["shard-000000.tar"] * 2
    assert shas[0] == shas[1]
