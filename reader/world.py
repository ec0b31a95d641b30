"""Topology as a value: which rank of how many, and which DataLoader worker of how many.

``World`` is detected once per iterator (inside the worker process, where
``torch.utils.data.get_worker_info()`` is set) and handed to the pure planning functions, so tests
build ``World(1, 2, 0, 2)`` directly instead of faking torch.distributed or worker processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class World:
    """Rank ``rank`` of ``world_size`` processes, DataLoader worker ``worker`` of ``num_workers``.

    ``num_workers`` is 1 (and ``worker`` 0) when iterating in the main process (``num_workers=0``).
    """

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"World: rank={self.rank} must be in [0, world_size={self.world_size})")
        if self.num_workers < 1 or not 0 <= self.worker < self.num_workers:
            raise ValueError(f"World: worker={self.worker} must be in [0, num_workers={self.num_workers})")

    @classmethod
    def detect(cls, rank: int | None = None, world_size: int | None = None) -> "World":
        """Resolve rank/world size and the current DataLoader worker.

        Rank and world size come from the arguments when given, else from ``torch.distributed``
        when it is initialized, else from the ``RANK``/``WORLD_SIZE`` environment variables (read
        now, not at import), else a single process. The worker comes from
        ``torch.utils.data.get_worker_info()`` (``0`` of ``1`` in the main process).
        """
        if rank is None or world_size is None:
            d_rank, d_size = _distributed_rank()
            rank = d_rank if rank is None else rank
            world_size = d_size if world_size is None else world_size
        worker, num_workers = 0, 1
        try:
            from torch.utils.data import get_worker_info
        except ImportError:  # pragma: no cover - torch is a core dependency
            info = None
        else:
            info = get_worker_info()
        if info is not None:
            worker, num_workers = info.id, info.num_workers
        return cls(rank=rank, world_size=world_size, worker=worker, num_workers=num_workers)


def _distributed_rank() -> tuple[int, int]:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # pragma: no cover
        pass
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError as e:
        raise ValueError(
            f"RANK={os.environ.get('RANK')!r} / WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} "
            "must be integers; unset them or pass rank=/world_size= explicitly"
        ) from e
