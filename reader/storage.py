"""Reading a packed dataset's bytes from local disk or any fsspec URL.

This is the only module that talks to storage. Everything above it asks for byte ranges of named
files in the dataset directory and gets ``bytes`` back.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping

import fsspec

from .format import MANIFEST_NAME, Manifest


class StorageError(OSError):
    """A read from the dataset's storage failed; the message names the URL and byte range."""


class Store:
    """A packed dataset's directory, local or remote.

    ``url`` is the directory or its ``manifest.json``; ``storage_options`` go to fsspec unchanged
    (e.g. ``{"endpoint_url": ..., "key": ..., "secret": ...}`` for ``s3://``).
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        url = str(url)
        if url.endswith("/" + MANIFEST_NAME) or url == MANIFEST_NAME:
            url = url[: -len(MANIFEST_NAME)].rstrip("/") or "."
        self.url = url.rstrip("/") or "/"
        self.storage_options = dict(storage_options or {})
        self._fs, self._root = fsspec.core.url_to_fs(self.url, **self.storage_options)

    def path(self, name: str) -> str:
        return f"{self._root.rstrip('/')}/{name}"

    def read_manifest(self) -> Manifest:
        where = f"{self.url}/{MANIFEST_NAME}"
        try:
            text = self._fs.cat_file(self.path(MANIFEST_NAME))
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"{where} not found: is {self.url} a directory written by 'lerobot-wds pack'?"
            ) from e
        return Manifest.from_json(text, where=where)

    def read_range(self, name: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of ``name``; raises StorageError when fewer come back."""
        try:
            data = self._fs.cat_file(self.path(name), start=start, end=end)
        except OSError as e:
            raise StorageError(f"{self.url}/{name}: reading bytes {start}-{end} failed: {e}") from e
        if len(data) != end - start:
            raise StorageError(
                f"{self.url}/{name}: asked for bytes {start}-{end}, got {len(data)} bytes "
                "(truncated shard? run 'lerobot-wds verify')"
            )
        return data

    def stream_ranges(self, requests: Iterable[tuple[str, int, int]]) -> Iterator[bytes]:
        """Yields the bytes of each ``(name, start, end)`` request, in order."""
        for name, start, end in requests:
            yield self.read_range(name, start, end)
