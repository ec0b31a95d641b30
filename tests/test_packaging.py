"""What ``pip install .`` puts on a machine: one import package, ``lerobot_wds``, and no test code.

The wheel is built from this checkout and installed into a fresh virtual env (its dependencies
come from the test env through a ``.pth`` line, so nothing is downloaded); imports run from a
directory outside the checkout, so only installed files can answer them.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(REPO)], check=True, capture_output=True)
    (whl,) = out.glob("lerobot_wds-*.whl")
    return whl


def test_wheel_holds_only_the_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"lerobot_wds"}
    assert "lerobot_wds/format.py" in names and "lerobot_wds/reader/dataset.py" in names
    assert "lerobot_wds/packer/cli.py" in names
    assert not [n for n in names if "synthetic" in n or "servers" in n or "testkit" in n or "/tests/" in n]
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "lerobot-wds = lerobot_wds.packer.cli:run" in entry


def test_installed_imports(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True)

    def run(code: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(py), "-c", code], cwd=tmp_path, capture_output=True, text=True)

    ok = run("import lerobot_wds, sys; from lerobot_wds import LeRobotShardDataset, mix, LeRobotTransitions, "
             "numpy_collate, Store, RetryPolicy; print(lerobot_wds.__file__)")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(site)
    for name in ("reader", "packer", "testkit"):
        r = run(f"import {name}")
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, (name, r.stdout, r.stderr)
    no_torch = run("import sys, lerobot_wds.format, lerobot_wds.packer.pack; print('torch' in sys.modules)")
    assert no_torch.returncode == 0 and no_torch.stdout.strip() == "False", no_torch.stderr
