"""reader/shared.py: main-process settings reach persistent workers; worker settings stay local."""

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

from lerobot_wds.reader.shared import MainSetting


class Probe(IterableDataset):
    """Yields the setting its iteration takes, after setting a worker-local value of its own."""

    def __init__(self):
        self.setting = MainSetting([0.0, 0.0], torch.float64)

    def __iter__(self):
        taken = self.setting.take()
        mark = -1.0 - torch.utils.data.get_worker_info().id
        self.setting.set([mark, mark])  # inside a worker: must reach neither the main process nor others
        yield torch.tensor(taken)


def test_main_settings_reach_persistent_workers_and_worker_settings_stay_local():
    probe = Probe()
    loader = DataLoader(probe, batch_size=None, num_workers=2, persistent_workers=True)
    seen = []
    for value in ([1.0, 2.0], [3.0, 4.0]):
        probe.setting.set(value)
        seen.append([b.tolist() for b in loader])
    assert seen[0] == [[1.0, 2.0], [1.0, 2.0]]
    # A worker's own setting (made last epoch) comes first, and only to that worker.
    assert seen[1] == [[-1.0, -1.0], [-2.0, -2.0]]
    assert probe.setting.take() == [3.0, 4.0]


def test_shape_is_fixed():
    with pytest.raises(ValueError, match=r"shape \(2,\) given \[1.0\]"):
        MainSetting([0.0, 0.0], torch.float64).set([1.0])
