"""Reading a byte range through transient storage failures, without duplicating or dropping bytes.

Object stores fail transiently: connections reset, requests time out, S3 answers ``503 SlowDown``
under load. ``read_range_retrying`` asks for what is still missing of a range, appends whatever
comes back, and on a transient error waits (capped exponential backoff) and asks again from the
first missing byte, so a retry never re-delivers bytes already received and never skips any. A
short answer (fewer bytes than asked, no error) is progress: the next request starts where it
stopped. Errors that retrying cannot fix (missing file, no permission, a server that ignores
``Range``) are raised at once; a range that fails ``max_attempts`` times in a row without any
progress raises ``StorageError`` naming the URL and the byte range.

Trade-off: the unit of resumption is one request. fsspec's ``cat_file`` returns nothing when a
body breaks midway, so a broken request is asked again from its start; keep requests moderate
(``Store`` splits large ranges into ``chunk_bytes`` pieces) to bound what a failure costs.

Clients retry on their own too (botocore and s3fs: several attempts each, with sleeps). This
layer is the one that resumes partial reads and reports retries; to leave retrying to it alone with
s3fs, pass ``storage_options={"config_kwargs": {"retries": {"total_max_attempts": 1}}}`` (botocore) and
set ``s3fs.S3FileSystem.retries = 1``.
"""

from __future__ import annotations

import errno
import http.client
import time
from dataclasses import dataclass
from typing import Callable

from ..errors import LeRobotWdsError
from .io_stats import BYTES_FETCHED, BYTES_REQUESTED, FETCH_S, REQUESTS, RETRIES, Stats


class StorageError(LeRobotWdsError, OSError):
    """A read from the dataset's storage failed; the message names the URL and byte range."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep asking for a range that fails transiently.

    ``max_attempts``: failed attempts in a row (without a single byte of progress) before giving
    up; ``base_delay_s`` × 2^k seconds between them, capped at ``max_delay_s``.
    """

    max_attempts: int = 8
    base_delay_s: float = 0.05
    max_delay_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        if not 0 <= self.base_delay_s <= self.max_delay_s:
            raise ValueError(
                f"RetryPolicy needs 0 <= base_delay_s <= max_delay_s, got {self.base_delay_s}, {self.max_delay_s}"
            )

    def delay_s(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1-based)."""
        return min(self.max_delay_s, self.base_delay_s * 2 ** (failures - 1))


_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
_TRANSIENT = (ConnectionError, TimeoutError, http.client.IncompleteRead, http.client.BadStatusLine)
#: Exception class names of optional client libraries (aiohttp, botocore, s3fs, urllib3, requests).
_TRANSIENT_NAMES = {
    "ClientPayloadError", "ServerDisconnectedError", "ClientConnectionError", "ClientOSError",
    "ServerTimeoutError", "ClientConnectorError", "EndpointConnectionError", "ConnectionClosedError",
    "ReadTimeoutError", "ConnectTimeoutError", "ResponseStreamingError", "IncompleteReadError",
    "ProtocolError", "FSTimeoutError", "ResponseParserError", "HTTPClientError", "ChunkedEncodingError",
}
_TRANSIENT_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling",
                    "ThrottlingException", "RequestLimitExceeded", "TooManyRequests"}


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(status, int):
            return status
    for attr in ("status", "status_code", "code"):  # aiohttp, requests, urllib
        status = getattr(exc, attr, None)
        if isinstance(status, int) and 100 <= status < 600:
            return status
    return None


def is_transient(exc: BaseException) -> bool:
    """True when asking again may succeed: connection/timeout errors, HTTP 5xx and 429, SlowDown."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 10:  # walk the cause chain: s3fs wraps botocore errors
        if isinstance(cur, _PERMANENT):
            return False
        if isinstance(cur, _TRANSIENT) or type(cur).__name__ in _TRANSIENT_NAMES:
            return True
        status = _http_status(cur)
        if status is not None and (status >= 500 or status == 429):
            return True
        response = getattr(cur, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") in _TRANSIENT_CODES:
            return True
        if isinstance(cur, OSError) and cur.errno in (errno.ECONNRESET, errno.ETIMEDOUT, errno.EPIPE):
            return True
        if any(s in str(cur) for s in ("SlowDown", "reduce your request rate", "Service Unavailable")):
            return True
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return False


def _past_end(exc: BaseException) -> bool:
    cur: BaseException | None = exc
    for _ in range(10):
        if cur is None:
            return False
        if _http_status(cur) == 416 or "not satisfiable" in str(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def read_range_retrying(
    read: Callable[[int, int], bytes],
    start: int,
    end: int,
    *,
    where: str,
    policy: RetryPolicy = RetryPolicy(),
    stats: Stats | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bytes:
    """Bytes ``[start, end)`` via ``read(start, end)``, asked again from the first missing byte.

    ``where`` names the file (URL) in errors. Each byte of the result was received exactly once
    and in order; the result is exactly ``end - start`` bytes long or an exception is raised.
    """
    parts: list[bytes] = []
    pos = start
    failures = 0
    while pos < end:
        try:
            if stats is not None:
                stats.add(REQUESTS)
                stats.add(BYTES_REQUESTED, end - pos)
                with stats.timer(FETCH_S):
                    got = read(pos, end)
            else:
                got = read(pos, end)
        except Exception as e:  # noqa: BLE001 - classified below; permanent errors re-raised
            if _past_end(e):  # HTTP 416: the file ends at or before ``pos``
                raise StorageError(
                    f"{where}: asked for bytes {start}-{end}, the file ends before {pos + 1} "
                    "(truncated shard? run 'lerobot-wds verify')"
                ) from e
            if not is_transient(e):
                raise StorageError(f"{where}: reading bytes {start}-{end} failed: {e!r}") from e
            error: BaseException | None = e
            got = b""
        else:
            error = None
            if len(got) > end - pos:
                raise StorageError(
                    f"{where}: asked for bytes {pos}-{end}, got {len(got)} bytes: "
                    "does the server honour HTTP Range requests?"
                )
        if got:
            parts.append(got)
            pos += len(got)
            failures = 0
            if stats is not None:
                stats.add(BYTES_FETCHED, len(got))
            if pos < end and stats is not None:
                stats.add(RETRIES)  # short read: ask for the rest
            continue
        if error is None:  # an empty answer without an error: the file ends before ``end``
            raise StorageError(
                f"{where}: asked for bytes {start}-{end}, the file ends at {pos} "
                "(truncated shard? run 'lerobot-wds verify')"
            )
        failures += 1
        if failures >= policy.max_attempts:
            raise StorageError(
                f"{where}: bytes {start}-{end} still missing {end - pos} bytes from offset {pos} after "
                f"{failures} failed attempts in a row; last error: {error!r}"
            ) from error
        if stats is not None:
            stats.add(RETRIES)
        sleep(policy.delay_s(failures))
    return b"".join(parts)
