"""Streaming reader of lerobot-wds shards: ``LeRobotShardDataset`` yields ``LeRobotDataset``-identical samples.

Also: ``mix`` (weighted mixtures of packed datasets), ``LeRobotTransitions`` (an RL transition
view) and ``numpy_collate`` (batches as numpy arrays, e.g. for JAX).
"""

from .collate import numpy_collate
from .dataset import LeRobotShardDataset
from .mixture import MixedDataset, mix
from .retry import RetryPolicy
from .storage import Store
from .transitions import LeRobotTransitions
from .world import World

__all__ = [
    "LeRobotShardDataset", "LeRobotTransitions", "MixedDataset", "RetryPolicy", "Store", "World", "mix",
    "numpy_collate",
]
