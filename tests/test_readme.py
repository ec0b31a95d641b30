"""The README's Python examples run as written, against a real S3 API on loopback.

Only what an example leaves to its reader is filled in, each replacement named below and required
to match the README's text (so an edited example fails here instead of drifting): the endpoint of
the loopback server, fewer epochs and workers, and for the JAX sketch its ``urls``, ``params`` and
``train_step``. ``aloha_packed`` is the shipped AV1 fixture; ``koch_packed`` a generated dataset
at another fps whose camera ``observation.images.front`` the example renames.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from testkit.servers import KEY, REGION, SECRET, s3_options
from testkit.synthetic import write_dataset

README = Path(__file__).resolve().parent.parent / "README.md"
DATA = Path(__file__).parent / "data"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def filled(code: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in code, f"README example no longer contains {old!r}: update tests/test_readme.py"
        code = code.replace(old, new)
    return code


@pytest.fixture(scope="module")
def packed_s3(s3_server, tmp_path_factory):
    """``s3://bucket/aloha_packed`` and ``s3://bucket/koch_packed`` on the loopback server."""
    from lerobot_wds.packer.pack import PackOptions, pack

    s3_server.make_bucket("bucket")
    koch = write_dataset(tmp_path_factory.mktemp("koch") / "src", episodes=[20, 25, 30], fps=10,
                         cameras={"observation.images.front": (96, 128), "observation.images.wrist": (64, 80)})
    opts = s3_options(s3_server.endpoint_url)
    for src, name in ((DATA / "lerobot_v3_av1", "aloha_packed"), (koch, "koch_packed")):
        pack(str(src), f"s3://bucket/{name}", PackOptions(progress=False, storage_options=opts))
    return s3_server.endpoint_url


@pytest.fixture
def s3_env(packed_s3, monkeypatch):
    """Credentials and endpoint the usual way, through the environment (examples pass none)."""
    for k, v in {"AWS_ENDPOINT_URL": packed_s3, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
                 "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    return packed_s3


def test_readme_has_the_examples():
    blocks = python_blocks()
    assert len(blocks) >= 3
    for code in blocks:
        compile(code, str(README), "exec")


def test_dataset_example(s3_env):
    code = next(b for b in python_blocks() if "ds = LeRobotShardDataset(" in b)
    code = filled(code, {'{"endpoint_url": "..."}': repr(s3_options(s3_env)), "range(10)": "range(2)"})
    ns: dict = {}
    exec(compile(code, str(README), "exec"), ns)
    batch = ns["batch"]
    assert batch["action"].shape[1:] == (16, 6) and batch["observation.images.top"].shape[1:] == (2, 3, 96, 128)
    assert ns["epoch"] == 1


def test_mixture_example(s3_env, capsys):
    code = next(b for b in python_blocks() if "mixture = mix(" in b)
    code = filled(code, {"num_workers=8": "num_workers=2", "range(10)": "range(2)"})
    ns: dict = {}
    exec(compile(code, str(README), "exec"), ns)
    batch = ns["batch"]
    assert set(batch["dataset_index"].tolist()) <= {0, 1}
    assert "observation.images.top" in batch and "observation.images.front" not in batch
    assert len(capsys.readouterr().out.strip().splitlines()) == 2  # shares printed once per epoch


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is optional (pip install jax)")
def test_jax_example(s3_env):
    code = next(b for b in python_blocks() if "import jax" in b)
    code = filled(code, {"num_workers=8": "num_workers=2"})
    ns: dict = {
        "urls": ["s3://bucket/aloha_packed", "s3://bucket/koch_packed"], "params": 0.0,
        "train_step": lambda params, batch: (params + 1, float(batch["action"].mean())),
    }
    exec(compile(code, str(README), "exec"), ns)
    assert ns["params"] > 0
