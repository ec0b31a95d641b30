"""A shard task's completion record (``.lerobot-wds/<shard>.json``): the typed entry a task writes
after its tar and a re-run trusts once the tar's size and sha256 match it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..format import ManifestShard, SkippedEpisode


@dataclass(frozen=True)
class ShardRecord:
    """``fingerprint``: hash of the pack's options and source the shard was written for; ``videos``:
    per camera, what its clips are (codec, pix_fmt, size, re-encoded); ``shard``: the manifest entry;
    ``skipped``: episodes of this task left out by ``--skip-bad-episodes``, with their reasons."""

    fingerprint: str
    videos: Mapping[str, Any]
    shard: ManifestShard
    skipped: tuple[SkippedEpisode, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        d = {"fingerprint": self.fingerprint, "videos": dict(self.videos), "shard": self.shard.to_dict()}
        if self.skipped:
            d["skipped"] = [s.to_dict() for s in self.skipped]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ShardRecord":
        """Raises KeyError/TypeError/ValueError on a malformed record (a re-run then rewrites the shard)."""
        return cls(fingerprint=d["fingerprint"], videos=dict(d["videos"]), shard=ManifestShard.from_dict(d["shard"]),
                   skipped=tuple(SkippedEpisode.from_dict(s) for s in d.get("skipped", ())))
