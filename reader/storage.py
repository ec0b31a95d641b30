"""Reading a packed dataset's bytes from local disk or any fsspec URL.

This is the only module that talks to storage. Everything above it asks for byte ranges of named
files in the dataset directory and gets ``bytes`` back: ``read_range`` for one range,
``stream_ranges`` for a sequence of ranges consumed in order (fetched ahead in background threads
within a byte budget, see ``reader/prefetch.py``). Every request goes through
``reader/retry.py`` (transient failures retried with capped backoff, partial reads resumed) and,
when ``cache_dir`` is given, through a size-bounded local cache (``reader/cache.py``). Counters
(bytes, requests, retries, seconds fetching and waiting, prefetch memory) go to ``stats``.

Any fsspec URL works: local paths, ``s3://`` (s3fs; ``storage_options`` such as
``{"endpoint_url": ..., "key": ..., "secret": ...}``), ``gs://``, ``https://``,
``hf://datasets/<repo>@<revision>/<path>``. A ``Store`` pickles without its filesystem object and
opens a fresh one in each process (DataLoader workers), so no connection pool crosses a fork.
"""

from __future__ import annotations

import os
import time
from typing import Any, Iterable, Iterator, Mapping

import fsspec

from ..errors import MissingDependency
from .cache import RangeCache
from ..format import MANIFEST_NAME, FormatError, Manifest
from .prefetch import Prefetcher
from .retry import RetryPolicy, StorageError, is_transient, read_range_retrying
from .io_stats import BYTES_FROM_CACHE, RETRIES, Stats

__all__ = ["Store", "StorageError", "RetryPolicy"]

_MISSING_BACKENDS = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
                     "http": "aiohttp", "https": "aiohttp"}

#: Filesystem objects inherited through fork, kept alive for the life of the process (see ``_fs``).
_INHERITED: list = []


#: The largest ``manifest.json`` a reader takes: one lists about 0.5 KB an episode with two cameras,
#: so about two million episodes fit. Parsing takes 4.8 times the size of a real-shaped one, and up
#: to 16 times for the costliest text ``Manifest.from_json`` parses (``tools/bench_manifest.py``).
MAX_MANIFEST_BYTES = 1 << 30


class Store:
    """A packed dataset's directory, local or remote.

    ``url`` is the directory or its ``manifest.json``; ``storage_options`` go to fsspec unchanged.
    ``prefetch_bytes``: how many bytes ``stream_ranges`` may fetch ahead of the consumer (0: no
    background fetching); ``chunk_bytes``: the largest single request (a failed request is asked
    again whole, so this bounds what one failure costs); ``threads``: requests in flight at once.
    ``cache_dir``/``cache_max_bytes``: keep fetched ranges on local disk, at most that many bytes.
    Prefetch memory is per consumer: each DataLoader worker holds up to ``prefetch_bytes`` (or one
    request, when larger) ahead, beside the episodes in its pool. 64 MB: about 40 episodes of
    ``tools/bench_peers.py``'s data, far more than hiding a request's latency needs; 256 MB held
    0.12-0.15 GB more at ``num_workers=0`` on its 200-episode data, for no more samples/s from disk
    or from S3 on loopback (``docs/performance.md``). To set these, hand a ready store to the dataset::

        LeRobotShardDataset(Store("s3://bucket/ds", {"endpoint_url": ...}, cache_dir="/tmp/c"))
    """

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        retry: RetryPolicy | None = None,
        prefetch_bytes: int = 64 << 20,
        chunk_bytes: int = 16 << 20,
        threads: int = 4,
        cache_dir: str | os.PathLike | None = None,
        cache_max_bytes: int = 20 << 30,
        stats: Stats | None = None,
    ) -> None:
        url = str(url)
        if url.endswith("/" + MANIFEST_NAME) or url == MANIFEST_NAME:
            url = url[: -len(MANIFEST_NAME)].rstrip("/") or "."
        self.url = url.rstrip("/") or "/"
        self.storage_options = dict(storage_options or {})
        self.retry = retry or RetryPolicy()
        if chunk_bytes < 1 or threads < 1 or prefetch_bytes < 0:
            raise ValueError(
                f"Store({url!r}): chunk_bytes={chunk_bytes} and threads={threads} must be >= 1, "
                f"prefetch_bytes={prefetch_bytes} >= 0"
            )
        self.prefetch_bytes = int(prefetch_bytes)
        self.chunk_bytes = int(chunk_bytes)
        self.threads = int(threads)
        self.cache = RangeCache(cache_dir, cache_max_bytes) if cache_dir is not None else None
        self.stats = stats if stats is not None else Stats()
        #: shard name -> sha256 from the manifest, so cache entries of a repacked shard never match.
        self._versions: dict[str, str] = {}
        self._fs_pid = -1
        self._open_fs()

    def _open_fs(self) -> None:
        try:
            self._fs_obj, self._root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        except ImportError as e:
            protocol = self.url.split("://", 1)[0] if "://" in self.url else "file"
            package = _MISSING_BACKENDS.get(protocol, f"the fsspec backend for {protocol}://")
            raise MissingDependency(f"reading {self.url} needs {package}: pip install {package}") from e
        self._fs_pid = os.getpid()

    @property
    def _fs(self) -> fsspec.AbstractFileSystem:
        if self._fs_pid != os.getpid():  # unpickled or forked into a new process
            inherited = self.__dict__.get("_fs_obj")
            if inherited is not None:
                # Never close or collect the parent's client here: its finalizer would touch the
                # parent's event loop (aiohttp: "attached to a different loop").
                _INHERITED.append(inherited)
            self._open_fs()
        return self._fs_obj

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_fs_obj", None)
        state["_fs_pid"] = -1
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def path(self, name: str) -> str:
        return f"{self._root.rstrip('/')}/{name}"

    def read_manifest(self, bad_episodes: list[str] | None = None) -> Manifest:
        """The checked manifest; with a ``bad_episodes`` list, episodes whose entries are damaged are
        left out and their errors appended to it (``lerobot_wds.format.check_manifest``)."""
        where = f"{self.url}/{MANIFEST_NAME}"
        try:
            text = self._cat_manifest(where)
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"{where} not found: is {self.url} a directory written by 'lerobot-wds pack'?"
            ) from e
        manifest = Manifest.from_json(text, where=where, bad_episodes=bad_episodes)
        self._versions = {s.name: s.sha256 for s in manifest.shards}
        return manifest

    def _cat_manifest(self, where: str) -> bytes:
        """The whole manifest, retried like any range (its size is not known in advance), up to
        :data:`MAX_MANIFEST_BYTES` (a link to an endless file, or a server that never stops, is an
        error, not all of memory)."""
        failures = 0
        while True:
            try:
                with self._fs.open(self.path(MANIFEST_NAME), "rb") as f:
                    text = f.read(MAX_MANIFEST_BYTES + 1)
                if len(text) > MAX_MANIFEST_BYTES:
                    raise FormatError(f"{where}: larger than {MAX_MANIFEST_BYTES:,} bytes, more than a manifest of "
                                      "two million episodes takes; not one written by 'lerobot-wds pack'")
                return text
            except (FileNotFoundError, FormatError):
                raise
            except Exception as e:  # noqa: BLE001 - classified by is_transient
                failures += 1
                if not is_transient(e) or failures >= self.retry.max_attempts:
                    raise StorageError(f"{where}: reading failed after {failures} attempts: {e!r}") from e
                self.stats.add(RETRIES)
                time.sleep(self.retry.delay_s(failures))

    def _fetch(self, name: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of ``name`` from storage, retried, in one logical request."""
        path = self.path(name)
        return read_range_retrying(
            lambda s, e: self._fs.cat_file(path, start=s, end=e), start, end,
            where=f"{self.url}/{name}", policy=self.retry, stats=self.stats,
        )

    def _cached(self, name: str, start: int, end: int) -> bytes | None:
        if self.cache is None:
            return None
        data = self.cache.get(self.url, name, self._versions.get(name, ""), start, end)
        if data is not None:
            self.stats.add(BYTES_FROM_CACHE, len(data))
        return data

    def _remember(self, name: str, start: int, end: int, data: bytes | memoryview) -> None:
        if self.cache is not None:
            self.cache.put(self.url, name, self._versions.get(name, ""), start, end, data)

    def read_range(self, name: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of ``name``; raises StorageError naming the file and range when
        they cannot be read whole (after retrying transient failures)."""
        if start < 0 or end < start:
            raise ValueError(f"{self.url}/{name}: invalid byte range {start}-{end}")
        data = self._cached(name, start, end)
        if data is not None:
            return data
        parts = [self._fetch(name, s, min(end, s + self.chunk_bytes)) for s in range(start, end, self.chunk_bytes)]
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._remember(name, start, end, data)
        return data

    def stream_ranges(self, requests: Iterable[tuple[str, int, int]]) -> Iterator[bytes | memoryview]:
        """Yields the bytes of each ``(name, start, end)`` request, in order, exactly once each;
        later requests are fetched in the background while the consumer works (``prefetch_bytes``),
        requests next to each other in a file as one of up to ``chunk_bytes`` (``reader/prefetch.py``),
        whose requests then come as read-only ``memoryview`` slices of it. With ``prefetch_bytes=0``
        each request is read alone, when the consumer asks for it."""
        if self.prefetch_bytes <= 0:
            for name, start, end in requests:
                yield self.read_range(name, start, end)
            return
        yield from Prefetcher(
            self._fetch, requests, max_bytes=self.prefetch_bytes, chunk_bytes=self.chunk_bytes,
            threads=self.threads, stats=self.stats, cached=self._cached, on_complete=self._remember,
        )
