"""lerobot-wds: pack LeRobot v3.0 datasets into tar shards of whole episodes, stream them back.

``lerobot_wds.packer`` writes shards (``lerobot-wds pack``); ``lerobot_wds.reader`` streams them
into samples identical to ``LeRobotDataset[i]``; ``lerobot_wds.format`` is the shard format both
share. The reader's public names are re-exported here::

    from lerobot_wds import LeRobotShardDataset, LeRobotTransitions, mix, numpy_collate
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .reader import (
        LeRobotShardDataset, LeRobotTransitions, MixedDataset, RetryPolicy, Store, World, mix, numpy_collate,
    )

__all__ = [
    "LeRobotShardDataset", "LeRobotTransitions", "MixedDataset", "RetryPolicy", "Store", "World", "mix",
    "numpy_collate",
]


def __getattr__(name: str) -> Any:
    # Resolved on first use: the packer and the format module import this package without torch.
    if name in __all__:
        return getattr(import_module(".reader", __name__), name)
    raise AttributeError(f"module 'lerobot_wds' has no attribute {name!r}")
