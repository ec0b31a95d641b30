"""packer/task.py: the early-writeback file wrapper passes bytes through unchanged and flushes as it goes."""

from __future__ import annotations

import os

from packer.task import EarlyWriteback


def test_early_writeback_writes_everything_in_order_and_marks_flushed_ranges(tmp_path):
    chunks = [os.urandom(3 << 20), memoryview(os.urandom(2 << 20)), b"tail"]
    path = tmp_path / "shard.tar"
    with open(path, "wb") as f:
        w = EarlyWriteback(f, every=4 << 20)
        assert [w.write(c) for c in chunks] == [len(c) for c in chunks]
        assert w.mark == (5 << 20)  # writeback asked for once 4 MiB had piled up: after the second chunk
        assert os.path.getsize(path) >= w.mark  # what was handed to the kernel is in the file already
    assert path.read_bytes() == b"".join(chunks)
