"""tools/train_example.py runs, checkpoints model + data state, and a re-run resumes from it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from reader_helpers import pack_fixture

TOOL = Path(__file__).resolve().parents[1] / "tools" / "train_example.py"


def _load_tool():
    spec = importlib.util.spec_from_file_location("train_example", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_checkpoint_and_resume(tmp_path, capsys):
    tool = _load_tool()
    data = pack_fixture("lerobot_v3_images", tmp_path / "packed")
    args = ["--data", data, "--ckpt", str(tmp_path / "ckpt"), "--workers", "2", "--batch-size", "4",
            "--save-every", "3"]
    assert tool.main(args + ["--steps", "3"]) == 0
    first = torch.load(tmp_path / "ckpt" / "rank0.pt", weights_only=False)
    assert first["step"] == 3 and "data" in first and first["data"]  # loader state with its workers
    assert tool.main(args + ["--steps", "25"]) == 0  # 80 frames / 4 = 20 batches: crosses an epoch
    out = capsys.readouterr().out
    assert "resumed from" in out and "at step 3, epoch 0" in out
    last = torch.load(tmp_path / "ckpt" / "rank0.pt", weights_only=False)
    assert last["step"] == 25 and last["epoch"] == 1
    assert not all(torch.equal(a, b) for a, b in zip(first["model"].values(), last["model"].values()))
