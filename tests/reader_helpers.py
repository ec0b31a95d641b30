"""Helpers shared by the reader's tests: packing the real fixtures, collecting epochs, resume checks."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

DATA = Path(__file__).parent / "data"
#: Small shards, so the fixtures have several (fewer than ranks × workers in some tests).
SHARD_SIZE = 150_000


def pack_fixture(name: str, out: Path, shard_size: int = SHARD_SIZE) -> str:
    from lerobot_wds.packer.pack import PackOptions, pack

    pack(str(DATA / name), str(out), PackOptions(shard_size=shard_size, progress=False))
    return str(out)


def expected(name: str, kind: str) -> tuple[dict[str, Any], Any]:
    base = DATA / "expected" / name / f"expected_{kind}"
    return json.loads(Path(f"{base}.json").read_text()), np.load(f"{base}.npz")


def assert_sample_equal(item: dict[str, Any], index: int, js: dict, npz: Any) -> None:
    """Every tensor the expected item has, equal in dtype, shape and bits; same keys; same task."""
    keys = {k.split("/", 1)[1] for k in npz.files if k.startswith(f"{index}/")}
    assert set(item) == keys | {"task"}, f"index {index}: keys {sorted(set(item) ^ (keys | {'task'}))} differ"
    for key in keys:
        exp, got = npz[f"{index}/{key}"], item[key]
        assert isinstance(got, torch.Tensor), f"index {index}, {key}: {type(got)}"
        got = got.numpy()
        assert got.dtype == exp.dtype and got.shape == exp.shape, f"index {index}, {key}: {got.dtype}{got.shape} != {exp.dtype}{exp.shape}"
        assert np.array_equal(got, exp), f"index {index}, {key}: values differ"
    assert item["task"] == js["strings"][f"{index}/task"]


def indices_of(batches) -> list[int]:
    """Global frame indices, in order, from samples or collated batches."""
    out: list[int] = []
    for b in batches:
        idx = b["index"]
        out += idx.reshape(-1).tolist()
    return out


def assert_resumes(make_loader: Callable[[], Any], k: int) -> None:
    """Stop ``make_loader()`` after ``k`` items, resume from its state in a fresh loader: the two
    parts together are exactly the uninterrupted epoch, in order (zero repeated, zero dropped).

    ``make_loader`` returns a fresh iterable with ``state_dict``/``load_state_dict`` (the dataset
    itself with num_workers=0, or a StatefulDataLoader).
    """
    full = indices_of(make_loader())
    first_loader = make_loader()
    it = iter(first_loader)
    first = [next(it) for _ in range(k)]
    state = first_loader.state_dict()
    del it
    second_loader = make_loader()
    second_loader.load_state_dict(state)
    rest = indices_of(second_loader)
    got = indices_of(first) + rest
    assert len(got) == len(full) and len(set(got)) == len(got), f"k={k}: {len(got)} items, {len(set(got))} distinct, want {len(full)}"
    assert got == full, f"k={k}: resumed order differs from the uninterrupted epoch"


def corrupt_copy(src: str | Path, tmp_path: Path, shard: str = "shard-000001.tar") -> Path:
    """A copy of the packed dataset ``src`` with ``shard`` truncated to half its bytes."""
    dst = Path(tmp_path) / "corrupt"
    shutil.copytree(src, dst)
    p = dst / shard
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return dst


def dav1d_threads(_batch: Any = None) -> int:
    """Threads of this process that dav1d (FFmpeg's AV1 decoder) started; usable as a collate_fn,
    to count them in a DataLoader worker."""
    names = (open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
    return sum(name == "dav1d-worker" for name in names)
