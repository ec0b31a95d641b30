"""Whether an Arrow IPC file compresses its record batches, read from its footer before pyarrow
decodes anything.

A frame table is stored uncompressed (``lerobot_wds/format.py``), and uncompressed IPC data is read
in place: a table is never larger than its member. A compressed one would be inflated by pyarrow
into fresh memory, as large as its length fields claim: a member of a few hundred KB could claim
gigabytes (a decompression bomb in a damaged or hostile shard). pyarrow does not say whether a file
is compressed, so :func:`compressed_batches` reads it from the file's flatbuffers: the footer's
record batch and dictionary blocks, and in each block's message the ``compression`` field of its
record batch (``format/File.fbs`` and ``format/Message.fbs`` of the Arrow specification).
"""

from __future__ import annotations

import struct
from typing import Iterator

_MAGIC = b"ARROW1"
_CONTINUATION = 0xFFFFFFFF
_BLOCK = struct.Struct("<qi4xq")  # Block: offset, metaDataLength, (padding), bodyLength
_DICTIONARY_BATCH, _RECORD_BATCH = 2, 3  # MessageHeader union types


class IpcLayoutError(ValueError):
    """The bytes are not laid out as an Arrow IPC file (an offset points outside them, or a magic is missing)."""


class _Flat:
    """Bounds-checked reads of flatbuffer tables in ``data``."""

    def __init__(self, data: bytes | memoryview, start: int, end: int) -> None:
        self.data, self.start, self.end = data, start, end

    def _unpack(self, fmt: str, pos: int) -> int:
        size = struct.calcsize(fmt)
        if not self.start <= pos <= self.end - size:
            raise IpcLayoutError(f"offset {pos} outside the flatbuffer's bytes {self.start}-{self.end}")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def root(self) -> int:
        return self.start + self._unpack("<I", self.start)

    def field(self, table: int, index: int) -> int | None:
        """Where field ``index`` of the table at ``table`` is, or None when it is absent."""
        vtable = table - self._unpack("<i", table)
        size = self._unpack("<H", vtable)
        if 4 + 2 * index + 2 > size:
            return None
        offset = self._unpack("<H", vtable + 4 + 2 * index)
        return table + offset if offset else None

    def follow(self, pos: int) -> int:
        """The table or vector a uoffset at ``pos`` points to."""
        return pos + self._unpack("<I", pos)

    def u8(self, pos: int) -> int:
        return self._unpack("<B", pos)

    def u32(self, pos: int) -> int:
        return self._unpack("<I", pos)


def compressed_batches(data: bytes | memoryview) -> bool:
    """Whether any record batch or dictionary batch the IPC file ``data`` lists in its footer is
    compressed. Raises :class:`IpcLayoutError` where the footer or a message is not where the file
    says."""
    return any(_message_compressed(data, offset, meta_len) for _kind, offset, meta_len in _blocks(data))


def _blocks(data: bytes | memoryview) -> Iterator[tuple[str, int, int]]:
    """``(kind, offset, metaDataLength)`` of each block the footer lists: its dictionary batches
    (kind ``"dictionary"``), then its record batches (``"record"``)."""
    n = len(data)
    if n < 18 or bytes(data[:6]) != _MAGIC or bytes(data[n - 6:]) != _MAGIC:
        raise IpcLayoutError("no ARROW1 magic at both ends")
    footer_len = struct.unpack_from("<i", data, n - 10)[0]
    if not 0 < footer_len <= n - 18:
        raise IpcLayoutError(f"footer length {footer_len} does not fit a file of {n} bytes")
    footer = _Flat(data, n - 10 - footer_len, n - 10)
    root = footer.root()
    for kind, index in (("dictionary", 2), ("record", 3)):  # Footer.dictionaries, Footer.recordBatches
        at = footer.field(root, index)
        if at is None:
            continue
        vector = footer.follow(at)
        count = footer.u32(vector)
        if vector + 4 + count * _BLOCK.size > footer.end:
            raise IpcLayoutError(f"{count} blocks do not fit the footer")
        for k in range(count):
            offset, meta_len, _body = _BLOCK.unpack_from(data, vector + 4 + k * _BLOCK.size)
            yield kind, offset, meta_len


def _message_compressed(data: bytes | memoryview, offset: int, meta_len: int) -> bool:
    if not (0 <= offset and offset + meta_len <= len(data) and meta_len >= 8):
        raise IpcLayoutError(f"a block at {offset} of {meta_len} bytes is outside the file")
    head = struct.unpack_from("<I", data, offset)[0]
    start = offset + 8 if head == _CONTINUATION else offset + 4
    msg = _Flat(data, start, offset + meta_len)
    root = msg.root()
    kind_at, header_at = msg.field(root, 1), msg.field(root, 2)  # Message.header_type, Message.header
    if kind_at is None or header_at is None:
        return False
    kind, header = msg.u8(kind_at), msg.follow(header_at)
    if kind == _DICTIONARY_BATCH:  # DictionaryBatch.data: a RecordBatch
        data_at = msg.field(header, 1)
        if data_at is None:
            return False
        header, kind = msg.follow(data_at), _RECORD_BATCH
    return kind == _RECORD_BATCH and msg.field(header, 3) is not None  # RecordBatch.compression
