"""reader/arrow_ipc.py: whether an Arrow IPC file's batches are compressed, from its flatbuffers."""

import random

import pyarrow as pa
import pytest

from lerobot_wds.reader.arrow_ipc import IpcLayoutError, _blocks, _message_compressed, compressed_batches

TABLE = pa.table({"a": list(range(1000)), "s": pa.array(["x", "y"] * 500).dictionary_encode(), "b": [b"z" * 10] * 1000})


def ipc_file(compression=None, batches=2) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression) if compression else None
    with pa.ipc.new_file(sink, TABLE.schema, options=options) as w:
        for _ in range(batches):
            w.write_table(TABLE)
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize("compression,batches,expected",
                         [(None, 2, False), (None, 0, False), ("zstd", 2, True), ("lz4", 1, True)])
def test_compression_is_read_from_the_footer_and_messages(compression, batches, expected):
    assert compressed_batches(ipc_file(compression, batches)) is expected


def test_dictionary_batches_are_checked_too():
    """pyarrow inflates a compressed dictionary batch as it does a record batch."""
    for compression, expected in ((None, [False]), ("zstd", [True])):
        data = ipc_file(compression, 1)
        kinds = [kind for kind, _, _ in _blocks(data)]
        assert kinds == ["dictionary", "record"]
        assert [_message_compressed(data, o, m) for kind, o, m in _blocks(data) if kind == "dictionary"] == expected


def test_bytes_that_are_not_an_ipc_file_raise_a_layout_error():
    data = ipc_file()
    for bad in (b"", data[:17], data[:-3], b"ARROW1" + bytes(100) + b"ARROW1"):
        with pytest.raises(IpcLayoutError):
            compressed_batches(bad)
    rng = random.Random(0)
    for _ in range(500):  # a damaged file: an answer or a layout error, never anything else
        flipped = bytearray(data)
        flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        try:
            compressed_batches(bytes(flipped))
        except IpcLayoutError:
            pass
