"""An optional local directory that keeps fetched byte ranges of shards, within a size bound.

A second epoch over a remote dataset asks for the same ranges again (the plan changes the order,
not the ranges); with a cache they come from local disk. Entries are whole requests, keyed by the
dataset URL, the shard name, its sha256 from the manifest (a repacked shard never hits a stale
entry) and the byte range. Writes go to a ``.tmp`` name and are renamed into place, so several
DataLoader workers (or ranks on one machine) can share one directory: a reader sees a whole entry
or none.

Each entry ends with the XXH3-64 of its bytes, checked on every hit: an entry damaged on disk (or
replaced) is a miss, deleted and fetched again, not a shard that fails its checksums every epoch.
Entries are opened without following links and only as regular files of their exact size (never a
device, a pipe or a link to one), and written to a new file that no link can redirect.

The directory must be yours and not writable by every user (it is made ``0o700`` when missing):
whoever can write there can hand out a well-formed entry of other bytes, which the reader's member
checksums then refuse (an error naming the shard), every epoch until the entry is deleted. A
directory of another user, or one every user can write (``/tmp`` itself), is refused; one your
group can write is accepted (those you trust).

The bound: after each write, least recently used entries (by file mtime, refreshed on every hit)
are deleted until the directory holds at most ``max_bytes``; an entry larger than ``max_bytes`` is
not stored. Processes sharing a directory may briefly overshoot by the entries they write at the
same moment. Deleting the directory at any time is safe.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading

import xxhash

from ..errors import UsageError

_SUFFIX = ".bin"
#: Bytes of XXH3-64 after an entry's data.
_DIGEST = 8


class RangeCache:
    """Byte ranges of shards kept under ``dir``, at most ``max_bytes`` bytes in all."""

    def __init__(self, dir: str | os.PathLike, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"cache max_bytes must be >= 0, got {max_bytes}")
        self.dir = os.fspath(dir)
        self.max_bytes = int(max_bytes)
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        _check_owner(self.dir)
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
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENOENT:  # a link (ELOOP), or unreadable: not an entry this cache wrote
                self._drop(path)
            return None
        try:
            st = os.fstat(fd)
            size = st.st_size
            whole = stat.S_ISREG(st.st_mode) and size == end - start + _DIGEST
            with os.fdopen(fd, "rb", closefd=False) as f:
                data, digest = (f.read(end - start), f.read(_DIGEST + 1)) if whole else (b"", b"")
            os.utime(fd)  # recently used: evicted last
        except OSError:
            return None
        finally:
            os.close(fd)
        if not whole or len(data) != end - start or xxhash.xxh3_64_digest(data) != digest:
            self._drop(path)  # damaged or foreign: a miss, and the fetch replaces it
            return None
        return data

    def put(self, url: str, name: str, version: str, start: int, end: int, data: bytes | memoryview) -> None:
        """Store ``data`` (bytes ``[start, end)`` of ``name``), then evict down to ``max_bytes``."""
        if len(data) != end - start or len(data) + _DIGEST > self.max_bytes:
            return
        path = self._path(url, name, version, start, end)
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)  # a new file, not a link
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.write(xxhash.xxh3_64_digest(data))
            os.replace(tmp, path)
        except OSError:
            self._drop(tmp)
            return  # a full disk makes the cache useless, not the run
        self.evict(keep=path)

    @staticmethod
    def _drop(path: str) -> None:
        try:
            os.unlink(path)
        except OSError:
            pass

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


def _check_owner(path: str) -> None:
    """Refuse a cache directory another user owns or every user can write (see the module docstring)."""
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"cache_dir {path} is not a directory")
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise UsageError(
            f"cache_dir {path} belongs to another user (uid {st.st_uid}), who could plant cache entries "
            "there: choose a directory of your own"
        )
    if st.st_mode & stat.S_IWOTH:
        raise UsageError(
            f"cache_dir {path} is writable by every user, any of whom could plant cache entries there: "
            f"choose a directory only you can write, or `chmod o-w {path}`"
        )
