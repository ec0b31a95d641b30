"""Streaming reader of lerobot-wds shards: ``LeRobotShardDataset`` yields ``LeRobotDataset``-identical samples.

Also: ``mix`` (weighted mixtures of packed datasets), ``LeRobotTransitions`` (an RL transition
view) and ``numpy_collate`` (batches as numpy arrays, e.g. for JAX).
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .collate import numpy_collate
    from .dataset import LeRobotShardDataset
    from .mixture import MixedDataset, mix
    from .transitions import LeRobotTransitions
    from .world import World

__all__ = ["LeRobotShardDataset", "LeRobotTransitions", "MixedDataset", "World", "mix", "numpy_collate"]

# Lazy: ``reader.format`` (imported by the packer) must not pull in torch.
_HOME = {
    "LeRobotShardDataset": "dataset", "World": "world", "mix": "mixture", "MixedDataset": "mixture",
    "LeRobotTransitions": "transitions", "numpy_collate": "collate",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module 'reader' has no attribute {name!r}")
