"""Streaming reader of lerobot-wds shards: ``LeRobotShardDataset`` yields ``LeRobotDataset``-identical samples."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dataset import LeRobotShardDataset
    from .world import World

__all__ = ["LeRobotShardDataset", "World"]


def __getattr__(name: str) -> Any:
    # Lazy: ``reader.format`` (imported by the packer) must not pull in torch.
    if name == "LeRobotShardDataset":
        from .dataset import LeRobotShardDataset

        return LeRobotShardDataset
    if name == "World":
        from .world import World

        return World
    raise AttributeError(f"module 'reader' has no attribute {name!r}")
