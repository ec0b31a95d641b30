"""What reading a pack imports in lerobot's environment, where pandas is installed.

pyarrow's ``to_numpy`` imports pandas whenever pandas is installed: about 0.3 s in the training
process and in every new DataLoader worker, before its first batch. Reading a pack must not need it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lerobot", reason="needs lerobot 0.6.1's environment, which has pandas: run with .venv-lerobot")

READ_ALL = """
import sys
from lerobot_wds.reader import LeRobotShardDataset
ds = LeRobotShardDataset(sys.argv[1], delta_timestamps={"action": [0.0, 1 / 30], "flag": [-1 / 30, 0.0]})
n = sum(1 for _ in ds)
print(n, "pandas" in sys.modules)
"""


def test_reading_every_sample_of_a_pack_does_not_import_pandas(tmp_path):
    """Columns of every kind lerobot's writer stores (float32, float64, int16, bool, int64 indices,
    a video camera), read in windows too, from a pack made by our CLI."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_wds.packer.scheduling import scheduling_kept

    src = tmp_path / "lerobot"
    features = {"observation.state": {"dtype": "float32", "shape": (2,), "names": None},
                "action": {"dtype": "float32", "shape": (2,), "names": None},
                "f64": {"dtype": "float64", "shape": (3,), "names": None},
                "i16": {"dtype": "int16", "shape": (1,), "names": None},
                "flag": {"dtype": "bool", "shape": (1,), "names": None},
                "observation.images.top": {"dtype": "video", "shape": (32, 48, 3),
                                           "names": ["height", "width", "channels"]}}
    with scheduling_kept():  # SVT-AV1 makes the thread real-time: packer/scheduling.py
        ds = LeRobotDataset.create("imports", fps=30, features=features, root=src, use_videos=True)
        for _ in range(2):
            for i in range(5):
                ds.add_frame({"observation.state": np.zeros(2, np.float32), "action": np.full(2, i, np.float32),
                              "f64": np.full(3, i / 7), "i16": np.array([-i], np.int16),
                              "flag": np.array([i % 2 == 1]),
                              "observation.images.top": np.full((32, 48, 3), 20 * i, np.uint8), "task": "look"})
            ds.save_episode()
        ds.finalize()
    out = tmp_path / "packed"
    cli = Path(sys.executable).parent / "lerobot-wds"
    subprocess.run([str(cli), "pack", str(src), str(out), "--no-progress"], check=True, capture_output=True, text=True)
    got = subprocess.run([sys.executable, "-c", READ_ALL, str(out)], check=True, capture_output=True, text=True)
    assert got.stdout.split() == ["10", "False"], f"10 samples, pandas not imported; got {got.stdout!r}"
