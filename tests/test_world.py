"""reader/world.py: topology from arguments, environment, and DataLoader workers."""

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

from lerobot_wds.reader.world import World


def test_explicit_and_env(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert World.detect() == World(1, 4, 0, 1)
    assert World.detect(rank=0, world_size=2) == World(0, 2, 0, 1)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert World.detect() == World(0, 1, 0, 1)


def test_bad_values(monkeypatch):
    with pytest.raises(ValueError, match=r"rank=2 must be in \[0, world_size=2\)"):
        World(2, 2)
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK='x'"):
        World.detect()


class _Report(IterableDataset):
    def __iter__(self):
        w = World.detect(0, 1)
        yield torch.tensor([w.worker, w.num_workers])


def test_worker_from_dataloader():
    got = sorted(tuple(b.tolist()[0]) for b in DataLoader(_Report(), num_workers=2))
    assert got == [(0, 2), (1, 2)]
