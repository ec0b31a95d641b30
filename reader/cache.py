"""An optional local directory that keeps fetched byte ranges of shards, within a size bound.

A second epoch over a remote dataset asks for the same ranges again (the plan changes the order,
not the ranges); with a cache they come from local disk. Entries are whole requests, keyed by the
dataset URL, the shard name, its sha256 from the manifest (a repacked shard never hits a stale
entry) and the byte range. Writes go to a ``.tmp`` name and are renamed into place, so several
DataLoader workers (or ranks on one machine) can share one directory: a reader sees a whole entry
or none.

The bound: after each write, least recently used entries (by file mtime, refreshed on every hit)
are deleted until the directory holds at most ``max_bytes``; an entry larger than ``max_bytes`` is
not stored. Processes sharing a directory may briefly overshoot by the entries they write at the
same moment. Deleting the directory at any time is safe.
"""

from __future__ import annotations

import hashlib
import os
import threading

_SUFFIX = ".bin"


class RangeCache:
    """Byte ranges of shards kept under ``dir``, at most ``max_bytes`` bytes in all."""

    def __init__(self, dir: str | os.PathLike, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"cache max_bytes must be >= 0, got {max_bytes}")
        self.dir = os.fspath(dir)
        self.max_bytes = int(max_bytes)
        os.makedirs(self.dir, exist_ok=True)
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"dir": self.dir, "max_bytes": self.max_bytes}

    def __setstate__(self, state: dict) -> None:
        self.dir, self.max_bytes = state["dir"], state["max_bytes"]
        self._lock = threading.Lock()

    def _path(self, url: str, name: str, version: str, start: int, end: int) -> str:
        digest = hashlib.sha256(f"{url}\0{name}\0{version}".encode()).hexdigest()[:24]
        return os.path.join(self.dir, f"{digest}-{start}-{end}{_SUFFIX}")

    def get(self, url: str, name: str, version: str, start: int, end: int) -> bytes | None:
        """The cached bytes ``[start, end)`` of ``name`` (``version``: its sha256), or None."""
        path = self._path(url, name, version, start, end)
        try:
            with open(path, "rb") as f:
                data = f.read()
            os.utime(path)  # recently used: evicted last
        except OSError:
            return None
        if len(data) != end - start:  # foreign or damaged file: ignore it, it will be replaced
            return None
        return data

    def put(self, url: str, name: str, version: str, start: int, end: int, data: bytes) -> None:
        """Store ``data`` (bytes ``[start, end)`` of ``name``), then evict down to ``max_bytes``."""
        if len(data) != end - start or len(data) > self.max_bytes:
            return
        path = self._path(url, name, version, start, end)
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return  # a full disk makes the cache useless, not the run
        self.evict(keep=path)

    def size_bytes(self) -> int:
        """Bytes held by the entries in the directory now."""
        return sum(size for _, _, size in self._entries())

    def _entries(self) -> list[tuple[int, str, int]]:
        out = []
        try:
            names = os.listdir(self.dir)
        except OSError:
            return out
        for fname in names:
            if not fname.endswith(_SUFFIX):
                continue
            path = os.path.join(self.dir, fname)
            try:
                st = os.stat(path)
            except OSError:
                continue  # evicted by another process meanwhile
            out.append((st.st_mtime_ns, path, st.st_size))
        return out

    def evict(self, keep: str | None = None) -> None:
        """Delete least recently used entries until at most ``max_bytes`` remain (``keep`` last)."""
        with self._lock:
            entries = sorted(self._entries(), key=lambda e: (e[1] == keep, e[0], e[1]))
            total = sum(size for _, _, size in entries)
            for _, path, size in entries:
                if total <= self.max_bytes:
                    break
                try:
                    os.unlink(path)
                except OSError:
                    continue
                total -= size
