"""Fetching the next byte ranges in background threads while the consumer works on this one.

``Prefetcher`` turns an iterable of ``(name, start, end)`` requests into their bytes, in request
order, exactly once each. Requests are split into pieces of at most ``chunk_bytes``; up to
``threads`` pieces are fetched at a time, ahead of the consumer, as long as the bytes fetched (or
being fetched) and not yet handed over stay within ``max_bytes``. The request the consumer is
waiting for always has up to ``threads`` pieces in flight, even past ``max_bytes``, so a bound
smaller than a shard slows reading down but never stalls it. Pieces are cut from a request only
as they are submitted: a request that claims more bytes than its file holds (a damaged or hostile
manifest) fails at the first piece past the file's end, having held no more than the file's bytes.

Memory held by prefetching is therefore at most ``max(max_bytes, largest request)``, plus the
request the consumer holds; ``peak_bytes`` reports the highest level reached and ``Stats`` gets a
``prefetch_bytes`` observation per request fetched. The request iterator is pulled lazily, only as
far as the budget reaches (and one request ahead, to see whether it joins the one before). Time
the consumer spends blocked on a request that has not arrived yet is counted as ``wait_s``: near
zero when prefetching hides the network.

Consecutive requests of one file that lie next to each other (at most ``MAX_GAP`` bytes apart,
such as the episodes of a shard in the order they were packed) are fetched as one request of up to
``chunk_bytes``, and handed over one by one as views of it: fewer, larger requests, as object
stores serve best. The gap bytes between them are fetched and dropped. A joined request that fails
is fetched again one request at a time, so an error (a range past the file's end, say) surfaces at
the request it belongs to and no other. Cache hits and completions stay per request.

Trade-off: splitting a range into pieces costs one request per piece (latency, per-request
price), but lets a failed piece be fetched again alone and lets pieces of one shard come in
parallel, which is what hides per-request latency of object stores.
"""

from __future__ import annotations

from collections import deque
from contextlib import nullcontext
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from .io_stats import PREFETCH_BYTES, WAIT_S, Stats

Request = tuple[str, int, int]

#: The most bytes between two requests of a file that are still fetched as one (a shard's tar
#: padding between episodes is at most 511).
MAX_GAP = 64 << 10


@dataclass
class _Entry:
    request: Request  # what is fetched: one request, or several next to each other joined
    members: list[Request]  # the requests handed over from it, in order
    futures: deque[Future] = field(default_factory=deque)  # pieces submitted, in order, not collected yet
    parts: list[bytes] = field(default_factory=list)  # pieces collected by the consumer
    next: int = 0  # where the next piece to submit starts (the request's end: all submitted)
    size: int = 0
    hit: bool = False  # served by ``cached``

    @classmethod
    def single(cls, request: Request) -> "_Entry":
        """One request, nothing of it submitted yet."""
        _, start, end = request
        return cls(request, [request], next=start, size=end - start)

    def joins(self, other: "_Entry", chunk_bytes: int) -> bool:
        """Whether ``other`` (a new single request, not yet submitted) can be fetched with this one."""
        name, start, end = self.request
        o_name, o_start, o_end = other.request
        return (not self.hit and not other.hit and o_name == name
                and 0 <= o_start - end <= MAX_GAP and o_end - start <= chunk_bytes)

    def join(self, other: "_Entry") -> None:
        name, start, _ = self.request
        self.request = (name, start, other.request[2])
        self.members.append(other.request)
        self.size = other.request[2] - start


class Prefetcher:
    """Iterate the bytes of ``requests`` in order, fetched ahead within a byte budget.

    ``fetch(name, start, end)`` must return exactly bytes ``[start, end)`` of ``name`` (retrying
    is its business) and be safe to call from several threads. ``cached(name, start, end)``, when
    given, may return the whole request's bytes without fetching; ``on_complete`` is called with
    each request's bytes once fetched (e.g. to fill a cache). Each request's bytes come as
    ``bytes``, or as a read-only ``memoryview`` of a joined request's.
    """

    def __init__(
        self,
        fetch: Callable[[str, int, int], bytes],
        requests: Iterable[Request],
        *,
        max_bytes: int = 256 << 20,
        chunk_bytes: int = 16 << 20,
        threads: int = 4,
        stats: Stats | None = None,
        cached: Callable[[str, int, int], bytes | None] | None = None,
        on_complete: Callable[[str, int, int, bytes | memoryview], None] | None = None,
    ) -> None:
        if max_bytes < 0 or chunk_bytes < 1 or threads < 1:
            raise ValueError(
                f"Prefetcher needs max_bytes >= 0, chunk_bytes >= 1, threads >= 1; "
                f"got {max_bytes}, {chunk_bytes}, {threads}"
            )
        self._fetch = fetch
        self._requests = requests
        self.max_bytes = max_bytes
        self.chunk_bytes = chunk_bytes
        self.threads = threads
        self.stats = stats
        self._cached = cached
        self._on_complete = on_complete
        #: Bytes requested ahead and not yet handed to the consumer (now, and the highest seen).
        self.bytes_in_flight = 0
        self.peak_bytes = 0

    def _new_entry(self, request: Request) -> _Entry:
        name, start, end = request
        if end < start or start < 0:
            raise ValueError(f"{name}: invalid byte range {start}-{end}")
        entry = _Entry.single(request)
        hit = self._cached(name, start, end) if self._cached is not None else None
        if hit is not None:
            done: Future = Future()
            done.set_result(hit)
            entry.futures.append(done)
            entry.next, entry.hit = end, True
        return entry

    def _entries(self, requests: Iterable[Request]) -> Iterator[_Entry]:
        """One entry per request, requests next to each other in a file joined (one request ahead)."""
        pending: _Entry | None = None
        for request in requests:
            entry = self._new_entry(request)
            if pending is not None and pending.joins(entry, self.chunk_bytes):
                pending.join(entry)
                continue
            if pending is not None:
                yield pending
            pending = entry
        if pending is not None:
            yield pending

    def _unjoin(self, entries: deque) -> None:
        """Replace the head, a joined request that failed, by its requests, each to be fetched alone."""
        head = entries.popleft()
        for f in head.futures:
            f.cancel()
        self.bytes_in_flight -= head.next - head.request[1]
        for request in reversed(head.members):
            entries.appendleft(_Entry.single(request))

    def _top_up(self, entries: deque, requests: Iterator[_Entry], pool: ThreadPoolExecutor) -> None:
        """Submit pieces in request order while the budget allows (the head's, up to ``threads`` in
        flight, always)."""
        i = 0
        while True:
            if i == len(entries):
                if i > 0 and self.bytes_in_flight >= self.max_bytes:
                    return
                nxt = next(requests, None)
                if nxt is None:
                    return
                entries.append(nxt)
                if entries[-1].hit:  # served by the cache: already in memory
                    self.bytes_in_flight += entries[-1].size
            entry = entries[i]
            name, _, end = entry.request
            while entry.next < end:
                s, e = entry.next, min(end, entry.next + self.chunk_bytes)
                if self.bytes_in_flight + (e - s) > self.max_bytes and (i > 0 or len(entry.futures) >= self.threads):
                    return
                entry.futures.append(pool.submit(self._fetch, name, s, e))
                entry.next = e
                self.bytes_in_flight += e - s
            self.peak_bytes = max(self.peak_bytes, self.bytes_in_flight)
            i += 1

    def __iter__(self) -> Iterator[bytes | memoryview]:
        requests = self._entries(self._requests)
        entries: deque[_Entry] = deque()
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="lerobot-wds-prefetch")
        try:
            self._top_up(entries, requests, pool)
            while entries:
                head = entries[0]
                if self.stats is not None:
                    self.stats.observe(PREFETCH_BYTES, self.bytes_in_flight)
                with self.stats.timer(WAIT_S) if self.stats is not None else nullcontext():
                    failed = False
                    while head.futures:
                        try:
                            head.parts.append(head.futures.popleft().result())
                        except Exception:
                            if len(head.members) == 1:
                                raise
                            failed = True
                            break
                        if head.next < head.request[2]:  # the head's next pieces, as far as allowed
                            self._top_up(entries, requests, pool)
                if failed:
                    self._unjoin(entries)
                    self._top_up(entries, requests, pool)
                    continue
                entries.popleft()
                parts = head.parts
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                name, start, _ = head.request
                view = memoryview(data) if len(head.members) > 1 else None
                for k, (_, s, e) in enumerate(head.members):
                    piece = data if view is None else view[s - start : e - start]
                    if k == len(head.members) - 1:  # the joined bytes are no longer held here after this one
                        self.bytes_in_flight -= head.size
                    if self._on_complete is not None and not head.hit:
                        self._on_complete(name, s, e, piece)
                    self._top_up(entries, requests, pool)  # fetch ahead while the consumer works
                    yield piece
                del data, view, parts, piece
        finally:
            for entry in entries:
                for f in entry.futures:
                    f.cancel()
            try:
                pool.shutdown(wait=False, cancel_futures=True)
            except AttributeError:  # a generator closed at interpreter exit: queue's module is gone
                pass
