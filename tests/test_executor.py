"""packer/executor.py: the Ray executor (local mode, 2 CPUs) writes what the local pool writes, byte
for byte; retries a task that failed on a transient error; resumes; raises data errors at once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from testkit.hub_server import HubServer, tree
from lerobot_wds.packer.clip import ClipError
from lerobot_wds.packer.executor import LocalExecutor, RayExecutor, TaskFailed, make_executor
from lerobot_wds.packer.pack import PackOptions, pack

ray = pytest.importorskip("ray", reason="pip install 'lerobot-wds[ray]'")

DATA = Path(__file__).parent / "data"
AV1 = DATA / "lerobot_v3_av1"
OPTS = dict(shard_size=150_000, progress=False)


@pytest.fixture(scope="session")
def ray_local():
    """Ray in local mode with 2 CPUs, started once per session (about 10 s here)."""
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _files(root: Path) -> dict[str, bytes]:
    return {p: (root / p).read_bytes() for p in tree(root) if not p.startswith(".lerobot-wds/")}


def test_make_executor_choices():
    assert make_executor("local", 3) == LocalExecutor(3)
    assert make_executor("ray", address="auto", retries=1) == RayExecutor("auto", 1)
    with pytest.raises(ValueError, match="'local' or 'ray'"):
        make_executor("dask")
    with pytest.raises(ValueError, match="executor 'dask'"):
        PackOptions(executor="dask")


@pytest.mark.parametrize("name", ["lerobot_v3_av1", "lerobot_v3_images"])
def test_ray_writes_what_the_local_pool_writes(ray_local, tmp_path, name):
    local = pack(str(DATA / name), str(tmp_path / "local"), PackOptions(workers=2, **OPTS))
    remote = pack(str(DATA / name), str(tmp_path / "ray"), PackOptions(executor="ray", **OPTS))
    assert len(local.shards) > 1 and remote == local
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")


def test_ray_resumes_from_complete_shards(ray_local, tmp_path):
    """A driver that died after some shards were done: a re-run keeps those files as they are."""
    out = tmp_path / "out"
    first = pack(str(AV1), str(out), PackOptions(executor="ray", **OPTS))
    want = _files(out)
    (out / "manifest.json").unlink()
    (out / first.shards[1].name).unlink()
    kept = {s.name: (out / s.name).stat().st_mtime_ns for s in first.shards if s.name != first.shards[1].name}
    again = pack(str(AV1), str(out), PackOptions(executor="ray", **OPTS))
    assert again == first and _files(out) == want
    assert {n: (out / n).stat().st_mtime_ns for n in kept} == kept


def test_ray_retries_a_task_that_failed_on_a_transient_error(ray_local, tmp_path):
    """The server answers the first ranged GET of one mp4 with 503: that task fails once, Ray runs it again."""
    server = HubServer(AV1)
    try:
        mp4 = "videos/observation.images.wrist/chunk-000/file-001.mp4"
        server.fail_ranged[mp4] = 1
        m = pack(server.url, str(tmp_path / "http"), PackOptions(executor="ray", **OPTS))
        assert server.fail_ranged[mp4] == 0  # the fault was hit
    finally:
        server.stop()
    local = pack(str(AV1), str(tmp_path / "local"), PackOptions(**OPTS))
    assert m.shards == local.shards
    assert {k: v for k, v in _files(tmp_path / "http").items() if k != "manifest.json"} == \
        {k: v for k, v in _files(tmp_path / "local").items() if k != "manifest.json"}


def test_ray_raises_a_data_error_at_the_driver(ray_local, tmp_path):
    """A truncated mp4 is not retried: the driver raises the task's ClipError, naming the file."""
    src = tmp_path / "src"
    shutil.copytree(AV1, src)
    bad = src / "videos/observation.images.wrist/chunk-000/file-001.mp4"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    with pytest.raises(ClipError, match="file-001.mp4"):
        pack(str(src), str(tmp_path / "out"), PackOptions(executor="ray", **OPTS))
    assert not (tmp_path / "out/manifest.json").exists()


def test_ray_gives_up_after_its_retries_naming_the_shard(ray_local, tmp_path):
    """More faults than retries: the driver stops with TaskFailed naming the shard; nothing published."""
    server = HubServer(AV1)
    try:
        server.fail_ranged["videos/observation.images.top/chunk-000/file-004.mp4"] = 5
        with pytest.raises(TaskFailed, match=r"shard-\d+\.tar \(episodes 5–5\): failed 2 time\(s\).*503"):
            pack(server.url, str(tmp_path / "out"), PackOptions(executor="ray", retries=1, **OPTS))
    finally:
        server.stop()
    assert not (tmp_path / "out/manifest.json").exists()


def test_cli_executor_ray(ray_local, tmp_path, capsys):
    from lerobot_wds.packer.cli import main

    out = tmp_path / "out"
    assert main(["pack", str(AV1), str(out), "--executor", "ray", "--shard-size", "150000", "--no-progress"]) == 0
    assert "packed 6 episodes" in capsys.readouterr().out
    assert main(["pack", str(AV1), str(tmp_path / "x"), "--ray-address", "auto"]) == 1
    assert "--ray-address needs --executor ray" in capsys.readouterr().err


def test_ray_tasks_read_a_hub_repo(ray_local, tmp_path):
    """Workers get the source's HfFileSystem by pickle and read the repo themselves."""
    server = HubServer(AV1, repo_id="lerobot-wds/av1")
    try:
        m = pack("hf://datasets/lerobot-wds/av1", str(tmp_path / "hub"),
                 PackOptions(executor="ray", storage_options={"endpoint": server.url}, **OPTS))
    finally:
        server.stop()
    local = pack(str(AV1), str(tmp_path / "local"), PackOptions(**OPTS))
    assert m.shards == local.shards and m.source["repo_id"] == "lerobot-wds/av1"
