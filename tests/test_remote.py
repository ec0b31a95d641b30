"""Object storage end to end: pack a fixture to a real S3 API on loopback, stream it back, and get
the same samples as from the local copy, also through a proxy that injects faults."""

from __future__ import annotations

import pytest
import s3fs
import torch
from torch.utils.data import DataLoader

from lerobot_wds.reader import LeRobotShardDataset
from lerobot_wds.reader.retry import RetryPolicy
from lerobot_wds.reader.storage import Store
from reader_helpers import DATA, SHARD_SIZE, assert_sample_equal, expected, pack_fixture
from testkit.servers import Faults, s3_options

NAME = "lerobot_v3_av1"
URL = f"s3://lerobot-wds-test/packed/{NAME}"


@pytest.fixture(scope="module")
def packed_both(s3_server, tmp_path_factory):
    """(local dir, s3 url, storage_options): the same fixture packed to disk and to S3 by ``pack``."""
    from lerobot_wds.packer.pack import PackOptions, pack

    local = pack_fixture(NAME, tmp_path_factory.mktemp("remote") / NAME)
    opts = s3_options(s3_server.endpoint_url)
    pack(str(DATA / NAME), URL, PackOptions(shard_size=SHARD_SIZE, progress=False, storage_options=opts))
    return local, URL, opts


def _all(ds, num_workers=0):
    return list(DataLoader(ds, batch_size=None, num_workers=num_workers))


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a
    )


def test_packing_to_s3_writes_the_same_bytes(packed_both):
    local, url, opts = packed_both
    fs = s3fs.S3FileSystem(**opts)
    manifest = Store(local).read_manifest()
    assert fs.cat_file(f"{url[5:]}/manifest.json") == open(f"{local}/manifest.json", "rb").read()
    assert len(manifest.shards) >= 3
    for shard in manifest.shards:
        assert fs.cat_file(f"{url[5:]}/{shard.name}") == open(f"{local}/{shard.name}", "rb").read()


@pytest.fixture(scope="module")
def local_run(packed_both):
    """Samples (in DataLoader order) and stats of the local copy, 2 workers, seed 1."""
    ds = LeRobotShardDataset(packed_both[0], seed=1)
    return _all(ds, num_workers=2), ds.io_stats()


def test_stream_from_s3_equals_local_and_lerobot(packed_both, local_run):
    local, url, opts = packed_both
    want, local_stats = local_run
    remote_ds = LeRobotShardDataset(url, storage_options=opts, seed=1)
    got = _all(remote_ds, num_workers=2)
    assert len(got) == len(want) == 320
    assert all(_equal(a, b) for a, b in zip(got, want)), "remote samples differ from local ones"
    js, npz = expected(NAME, "plain")
    by_index = {int(s["index"]): s for s in got}
    for i in js["indices"][::4]:
        assert_sample_equal(by_index[i], i, js, npz)
    stats = remote_ds.io_stats()
    # The same requests as from disk, each answered once: nothing fetched twice by the S3 path.
    assert stats["bytes_fetched"] == stats["bytes_requested"] == local_stats["bytes_fetched"]
    assert stats["requests"] == local_stats["requests"]
    assert stats["decode_s"] > 0 and stats["pool_episodes_max"] <= 16


def test_a_shards_episodes_in_packed_order_come_in_one_request(packed_both):
    """Episodes next to each other in a shard are fetched together (up to ``chunk_bytes``): one
    request per shard here, not one per episode, with each episode's bytes handed over alone."""
    from lerobot_wds.reader.episodes import request_for

    local, url, opts = packed_both
    remote = Store(url, opts)
    manifest = remote.read_manifest()
    requests = [request_for(shard.name, e) for shard in manifest.shards for e in shard.episodes]
    assert len(requests) > len(manifest.shards)
    got = [bytes(b) for b in remote.stream_ranges(requests)]
    assert got == [open(f"{local}/{n}", "rb").read()[s:e] for n, s, e in requests]
    assert remote.stats.snapshot()["requests"] == len(manifest.shards)


def test_every_sample_once_through_faults(packed_both, local_run, fault_proxy, monkeypatch):
    url = packed_both[1]
    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)  # leave retrying to reader/retry.py
    proxy = fault_proxy(Faults(reset=0.2, slowdown=0.2, seed=7, max_faults=40, max_in_a_row=4))  # < 8 attempts
    store = Store(url, s3_options(proxy.endpoint_url), chunk_bytes=32_000,
                  retry=RetryPolicy(max_attempts=8, base_delay_s=0.001, max_delay_s=0.02))
    ds = LeRobotShardDataset(store, seed=1)
    got = _all(ds, num_workers=2)
    assert sorted(int(s["index"]) for s in got) == list(range(320))  # none twice, none missing
    want = {int(s["index"]): s for s in local_run[0]}
    assert all(_equal(s, want[int(s["index"])]) for s in got)
    assert proxy.counts["reset"] + proxy.counts["slowdown"] >= 5
    assert ds.io_stats()["retries"] >= proxy.counts["reset"] + proxy.counts["slowdown"]


def test_second_epoch_comes_from_the_local_cache(packed_both, local_run, tmp_path):
    url, opts = packed_both[1], packed_both[2]
    store = Store(url, opts, cache_dir=tmp_path / "cache", cache_max_bytes=10_000_000)
    ds = LeRobotShardDataset(store, episodes=[2, 5], seed=1)
    first = _all(ds)
    fetched = ds.io_stats()["bytes_fetched"]
    ds.set_epoch(1)
    second = _all(ds)
    stats = ds.io_stats()
    assert sorted(int(s["index"]) for s in first) == sorted(int(s["index"]) for s in second)
    assert len(first) == 12 + 33
    assert stats["bytes_fetched"] == fetched and stats["bytes_from_cache"] == fetched  # nothing fetched again
    assert 0 < store.cache.size_bytes() <= 10_000_000
    want = {int(s["index"]): s for s in local_run[0]}
    assert all(_equal(s, want[int(s["index"])]) for s in second)


def test_episodes_fetched_together_are_cached_one_by_one(packed_both, local_run, tmp_path):
    """Episodes 1 and 2 lie next to each other in one shard: fetched as one request, they still
    go into the cache as one entry each, and the next epoch reads both from it."""
    url, opts = packed_both[1], packed_both[2]
    store = Store(url, opts, cache_dir=tmp_path / "cache")
    ds = LeRobotShardDataset(store, episodes=[1, 2], seed=1)
    manifest = store.read_manifest()
    spans = [e.span for s in manifest.shards for e in s.episodes if e.episode_index in (1, 2)]
    assert spans[0][1] <= spans[1][0]  # the same shard, one after the other
    _all(ds)
    fetched = ds.io_stats()["bytes_fetched"]
    assert fetched >= sum(b - a for a, b in spans)
    ds.set_epoch(1)
    second = _all(ds)
    stats = ds.io_stats()
    assert stats["bytes_fetched"] == fetched  # nothing fetched again
    assert stats["bytes_from_cache"] == sum(b - a for a, b in spans)
    assert len([f for f in (tmp_path / "cache").rglob("*.bin")]) == 2
    want = {int(s["index"]): s for s in local_run[0]}
    assert len(second) == sum(e.length for s in manifest.shards for e in s.episodes if e.episode_index in (1, 2))
    assert all(_equal(s, want[int(s["index"])]) for s in second)
