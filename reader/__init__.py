"""Streaming reader of lerobot-wds shards: ``LeRobotShardDataset`` yields ``LeRobotDataset``-identical samples."""

from .dataset import LeRobotShardDataset
from .world import World

__all__ = ["LeRobotShardDataset", "World"]
