"""packer/shards.py: deterministic tar headers, member order, byte ranges and sha256."""

from __future__ import annotations

import hashlib
import io
import tarfile

from lerobot_wds.packer.shards import ShardWriter, member_order, sha256_file


def _write(samples):
    buf = io.BytesIO()
    refs = {}
    with ShardWriter(buf) as w:
        for key, members in samples:
            refs[key] = w.add_sample(key, members)
    return buf.getvalue(), refs, w


SAMPLES = [
    ("episode_000000", {"observation.images.wrist.mp4": b"w" * 700, "frames.arrow": b"f" * 10,
                        "meta.msgpack": b"m", "observation.images.top.mp4": b"t" * 513}),
    ("episode_000001", {"meta.msgpack": b"", "frames.arrow": b"x" * 512}),
]


def test_member_order_is_meta_frames_then_sorted_clips():
    order = member_order(SAMPLES[0][1])
    assert order == ["meta.msgpack", "frames.arrow", "observation.images.top.mp4", "observation.images.wrist.mp4"]


def test_headers_are_deterministic_and_ranges_point_at_data():
    data, refs, w = _write(SAMPLES)
    assert (w.size, w.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert _write(SAMPLES)[0] == data
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        for m in members:
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) == (0, 0, 0, "", "", 0o644)
    assert names[:4] == [f"episode_000000.{s}" for s in member_order(SAMPLES[0][1])]
    for key, members in SAMPLES:
        for suffix, ref in refs[key].items():
            assert data[ref.offset : ref.offset + ref.size] == members[suffix]


def test_long_member_names_use_pax_and_ranges_still_hold():
    key = "episode_000002"
    long = "observation.images." + "very_long_camera_name_" * 6 + ".mp4"
    data, refs, _ = _write([(key, {"meta.msgpack": b"a", long: b"clip"})])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert f"{key}.{long}" in tar.getnames()
    ref = refs[key][long]
    assert data[ref.offset : ref.offset + ref.size] == b"clip"


def test_sha256_file_matches_hashlib():
    blob = bytes(range(256)) * 5000
    assert sha256_file(io.BytesIO(blob), chunk=1000) == (len(blob), hashlib.sha256(blob).hexdigest())


def test_fast_header_is_byte_identical_to_tarfile():
    from lerobot_wds.packer.shards import _tarfile_header, header

    names = ["episode_000001.meta.msgpack", "episode_123456.observation.images.top.mp4", "a" * 99, "a" * 150, "épisode"]
    for name in names:
        for size in (0, 1, 511, 512, 10**9, 8**11 - 1, 8**11):
            assert header(name, size) == _tarfile_header(name, size), (name, size)


def test_member_given_as_buffers_is_written_as_their_concatenation():
    """A clip handed over as (head, view of the source, tail) makes the same tar as its joined bytes."""
    source = bytearray(b"abc" * 400)
    parts = (b"head", memoryview(source)[5:1100], bytearray(b"tail"))
    joined = b"".join(parts)
    as_parts, refs, w = _write([("episode_000000", {"meta.msgpack": b"m", "top.mp4": parts})])
    as_bytes, refs_b, _ = _write([("episode_000000", {"meta.msgpack": b"m", "top.mp4": joined})])
    assert as_parts == as_bytes and refs == refs_b
    assert (w.size, w.sha256) == (len(as_parts), hashlib.sha256(as_parts).hexdigest())
    ref = refs["episode_000000"]["top.mp4"]
    assert as_parts[ref.offset : ref.offset + ref.size] == joined


def test_large_members_hashed_beside_the_write_give_the_file_sha256(tmp_path):
    """Members above the parallel-hash threshold (hashed on a helper thread) and small ones between
    them: the recorded sha256 is the file's, and the tar reads back member for member."""
    import os

    big = os.urandom(3 << 20)
    members = {"meta.msgpack": b"m" * 100, "frames.arrow": os.urandom(300_000),
               "a.mp4": (b"head", memoryview(big)[7:], b"tail"), "b.mp4": bytearray(os.urandom(1 << 18))}
    path = tmp_path / "shard.tar"
    with open(path, "wb") as f, ShardWriter(f) as w:
        refs = w.add_sample("episode_000000", members)
        w.add_sample("episode_000001", {"meta.msgpack": b"x"})
    data = path.read_bytes()
    assert (w.size, w.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    with tarfile.open(path) as tar:
        for suffix, want in members.items():
            want = b"".join(want) if isinstance(want, tuple) else bytes(want)
            assert tar.extractfile(f"episode_000000.{suffix}").read() == want
            ref = refs[suffix]
            assert data[ref.offset : ref.offset + ref.size] == want
