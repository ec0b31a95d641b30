"""Remote sources (the Hub, any HTTP(S) server) read by byte range: what a shard task fetches.

Nothing is downloaded whole and nothing is staged on disk. The driver reads ``meta/`` (for
``meta/episodes`` only its non-stats columns) and asks each needed file's size; a shard task then
reads, from each source file its episodes need and no other file:

* data parquet: the footer, then only the row groups holding its episodes (``frames.py``);
* mp4: the container header and sample table, then each clip's packets as one byte range
  (``clip.py``/``sampletable.py``).

fsspec's remote files read ahead ``block_size`` bytes past every read; its 5 MB default would
fetch megabytes around each clip of a 200 MB mp4 that holds a hundred episodes. Sources on
``hf://``, ``http://`` and ``https://`` get :data:`READ_BLOCK_BYTES` unless the user sets
``block_size`` (``--storage-option block_size=…``). The Hub is reached through huggingface_hub's
``HfFileSystem`` (``hf://datasets/<repo_id>@<revision>``), never ``snapshot_download``.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import UsageError

#: Read-ahead of a remote source file (bytes): a few clips' worth, small next to a video file.
READ_BLOCK_BYTES = 1 << 20

REMOTE_PROTOCOLS = ("hf", "http", "https")


def source_storage_options(url: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` for the source filesystem of ``url``, with a ranged-read ``block_size`` for remote ones.

    ``block_size`` is an integer number of bytes (a string from the command line is converted).
    """
    out = dict(options or {})
    protocol = url.split("://", 1)[0] if "://" in url else ""
    if protocol in REMOTE_PROTOCOLS:
        try:
            out["block_size"] = int(out.get("block_size", READ_BLOCK_BYTES))
        except (TypeError, ValueError):
            raise UsageError(f"storage option block_size={out['block_size']!r}: expected a number of bytes") from None
    return out
