"""Source fingerprint: what each input file of a pack was when the pack started.

Per file, its size plus what the filesystem says identifies a version: the modification time on a
local disk; ETag / version id on object storage; the blob id or LFS sha256 on the Hub. No content
is read (hashing every video would cost as much as packing). A re-run of the same pack compares the
source with the fingerprint it wrote and refuses, naming the files that changed, instead of mixing
shards cut from two versions of the source.
"""

from __future__ import annotations

from typing import Any, Mapping

#: fs.info() keys that identify a file's version, where a filesystem reports them.
_VERSION_KEYS = ("mtime", "ETag", "etag", "VersionId", "version_id", "blob_id")


def identity(info: Mapping[str, Any]) -> dict[str, Any]:
    """The fingerprint of one file from its ``fs.info()``: size and version keys, JSON-ready."""
    d: dict[str, Any] = {"size": info.get("size")}
    for k in _VERSION_KEYS:
        if info.get(k) is not None:
            d[k] = info[k] if isinstance(info[k], (int, float, str)) else str(info[k])
    lfs = info.get("lfs")
    if isinstance(lfs, Mapping) and lfs.get("sha256"):
        d["sha256"] = lfs["sha256"]
    return d


def changed_files(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Files whose fingerprint differs, that appeared or that went away (sorted)."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def describe_changes(root: str, changed: list[str]) -> str:
    shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
    return (f"{root}: the source changed since this pack started ({shown}); its shards would mix two versions of "
            "the source. Pack into an empty OUT (or delete this one) to pack the source as it is now")
