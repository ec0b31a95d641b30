"""tools/jax_example.py trains on a mixture of transition views when JAX is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "jax_example.py"


def test_jax_example_runs(capsys):
    pytest.importorskip("jax", reason="JAX is optional (pip install jax)")
    spec = importlib.util.spec_from_file_location("jax_example", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--epochs", "1", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "epoch 0: loss" in out and "realised shares" in out
