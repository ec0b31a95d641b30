"""reader/storage.py: the same bytes from local disk and from a real S3 API on loopback."""

from __future__ import annotations

import os
import pickle
import shutil

import pytest
import s3fs

from lerobot_wds.format import MANIFEST_NAME
from lerobot_wds.reader.storage import Store, StorageError
from testkit.servers import s3_options

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "lerobot_v3_av1")
NAMES = ["data/chunk-000/file-000.parquet", "videos/observation.images.top/chunk-000/file-001.mp4"]


@pytest.fixture(scope="module")
def remote_copy(s3_server):
    """The fixture's files uploaded to the S3 server; returns (s3 url, storage_options)."""
    fs = s3fs.S3FileSystem(**s3_options(s3_server.endpoint_url))
    for name in NAMES:
        fs.put_file(os.path.join(FIXTURE, name), f"lerobot-wds-test/storage/{name}")
    return "s3://lerobot-wds-test/storage", s3_options(s3_server.endpoint_url)


def _requests():
    out = []
    for name in NAMES:
        size = os.path.getsize(os.path.join(FIXTURE, name))
        out += [(name, 0, size), (name, 7, 7), (name, size // 3, size // 2), (name, size - 100, size)]
    return out


@pytest.mark.parametrize("prefetch_bytes", [0, 30_000])
def test_s3_gives_the_same_bytes_as_local(remote_copy, prefetch_bytes):
    url, opts = remote_copy
    local = Store(FIXTURE, chunk_bytes=10_000, prefetch_bytes=prefetch_bytes)
    remote = Store(url, opts, chunk_bytes=10_000, prefetch_bytes=prefetch_bytes)
    want = [open(os.path.join(FIXTURE, n), "rb").read()[s:e] for n, s, e in _requests()]
    assert list(local.stream_ranges(_requests())) == want
    assert list(remote.stream_ranges(_requests())) == want
    assert [remote.read_range(*r) for r in _requests()] == want
    stats = remote.stats.snapshot()
    asked = 2 * sum(e - s for _, s, e in _requests())  # stream_ranges then read_range
    # stream_ranges fetches ranges of a file lying close together as one, gap bytes included
    gaps = sum(s - e0 for (n0, _, e0), (n, s, _) in zip(_requests(), _requests()[1:]) if n == n0 and s > e0)
    assert stats["bytes_fetched"] == stats["bytes_requested"]
    assert asked <= stats["bytes_requested"] <= asked + (gaps if prefetch_bytes else 0)


def test_missing_manifest_and_short_file_are_named(remote_copy, tmp_path):
    url, opts = remote_copy
    with pytest.raises(FileNotFoundError, match=f"storage/{MANIFEST_NAME} not found"):
        Store(url, opts).read_manifest()
    size = os.path.getsize(os.path.join(FIXTURE, NAMES[0]))
    with pytest.raises(StorageError, match=rf"file-000.parquet: asked for bytes 0-{size + 10}, the file ends"):
        Store(url, opts).read_range(NAMES[0], 0, size + 10)
    with pytest.raises(StorageError, match="nope.tar"):
        Store(str(tmp_path)).read_range("nope.tar", 0, 10)


def test_manifest_url_and_pickling(tmp_path):
    shutil.copy(os.path.join(FIXTURE, NAMES[0]), tmp_path / "x.parquet")
    store = Store(str(tmp_path / MANIFEST_NAME))
    assert store.url == str(tmp_path)
    clone = pickle.loads(pickle.dumps(store))  # what a DataLoader worker receives
    assert clone.read_range("x.parquet", 10, 20) == store.read_range("x.parquet", 10, 20)


def test_missing_backend_names_the_package():
    with pytest.raises(ImportError, match="needs gcsfs: pip install gcsfs"):
        Store("gs://bucket/x")


def test_a_manifest_that_does_not_end_is_refused_at_the_limit(packed, tmp_path, monkeypatch):
    """A manifest.json linked to /dev/zero (or served without end) is read up to the limit and
    refused, not read until memory runs out; a real manifest under the limit reads as before."""
    from lerobot_wds.format import FormatError
    from lerobot_wds.reader import storage

    real = shutil.copytree(packed("lerobot_v3_av1"), tmp_path / "real")
    monkeypatch.setattr(storage, "MAX_MANIFEST_BYTES", os.path.getsize(real / MANIFEST_NAME))
    assert Store(str(real)).read_manifest().total_episodes > 0
    endless = tmp_path / "endless"
    endless.mkdir()
    (endless / MANIFEST_NAME).symlink_to("/dev/zero")
    with pytest.raises(FormatError, match=rf"endless/{MANIFEST_NAME}: larger than [\d,]+ bytes"):
        Store(str(endless)).read_manifest()
