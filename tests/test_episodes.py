"""reader/episodes.py: member bytes → Episode, and errors that name shard, episode and member."""

import dataclasses
import io

import msgpack
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lerobot_wds.reader.episodes import EpisodeError, parse_episode, request_for, split_members
from lerobot_wds.format import ClipInfo, ManifestEpisode, ShardEpisodeMeta, MemberRef
from lerobot_wds.packer.shards import ShardWriter

DATA = "tests/data/lerobot_v3_images/data/chunk-000/file-000.parquet"


def episode_members(episode_index=1):
    table = pq.read_table(DATA).filter(pa.compute.equal(pq.read_table(DATA)["episode_index"], episode_index))
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    meta = ShardEpisodeMeta(1, episode_index, table.num_rows, int(table["index"][0].as_py()), ("open the top drawer",),
                       {"cam": ClipInfo(0, table.num_rows, False, "av1", 96, 72)})
    return table, {"meta.msgpack": msgpack.packb(meta.to_dict()), "frames.arrow": sink.getvalue(), "cam.mp4": b"clip"}


def entry_for(members, episode_index=1, length=7):
    refs, off = {}, 512
    for k, v in members.items():
        refs[k] = MemberRef(off, len(v))
        off += 512 + -(-len(v) // 512) * 512
    return ManifestEpisode(episode_index, length, 20, refs)


def test_parse_columns_and_clips():
    table, members = episode_members()
    ep = parse_episode(members, entry_for(members), "shard-000000.tar", ["cam"], ["observation.images.gripper"])
    assert ep.length == 7 and ep.episode_index == 1 and ep.clips == {"cam": b"clip"}
    state = ep.columns["observation.state"]
    assert state.dtype == torch.float32 and state.shape == (7, 4)
    assert np.array_equal(state.numpy(), np.stack(table["observation.state"].to_numpy(zero_copy_only=False)))
    assert ep.columns["index"].tolist() == list(range(20, 27)) and ep.columns["index"].dtype == torch.int64
    assert ep.columns["timestamp"].dtype == torch.float32 and ep.columns["timestamp"].shape == (7,)
    pngs = ep.columns["observation.images.gripper"]
    assert len(pngs) == 7 and pngs[0][:4] == b"\x89PNG"


def _shard(members, names=None):
    """A real tar shard holding ``members`` (under ``names``, default their own); (bytes, entry)."""
    out = io.BytesIO()
    w = ShardWriter(out)
    refs = {k: w.add((names or {}).get(k, f"episode_000001.{k}"), v) for k, v in members.items()}
    w.close()
    return out.getvalue(), ManifestEpisode(1, 7, 20, refs)


def test_split_members_from_one_range():
    _, members = episode_members()
    shard, entry = _shard(members)
    start, end = entry.span
    name, a, b = request_for("shard-000003.tar", entry)
    assert (name, a, b) == ("shard-000003.tar", start, end) and a == 0  # the first member's header too
    got = split_members(shard[a:b], entry, name)
    assert {k: bytes(v) for k, v in got.items()} == members
    with pytest.raises(EpisodeError, match=r"shard-000003.tar, episode 1: expected \d+ bytes.*truncated"):
        split_members(shard[a : b - 10], entry, name)


def test_a_range_must_hold_the_member_its_tar_header_names():
    _, members = episode_members()
    shard, entry = _shard(members, names={"cam.mp4": "episode_000002.cam.mp4"})
    with pytest.raises(EpisodeError, match=r"shard-000003.tar, episode 1: member episode_000001.cam.mp4 is not at offset"):
        split_members(shard[slice(*entry.span)], entry, "shard-000003.tar")


def test_missing_member_names_shard_episode_member():
    _, members = episode_members()
    del members["cam.mp4"]
    with pytest.raises(EpisodeError, match=r"shard-000002.tar, episode 1: member episode_000001.cam.mp4 is missing"):
        parse_episode(members, entry_for(members), "shard-000002.tar", ["cam"])


def test_corrupt_members():
    _, members = episode_members()
    bad = dict(members, **{"frames.arrow": members["frames.arrow"][:100]})
    with pytest.raises(EpisodeError, match=r"shard-000000.tar, episode 1: episode_000001.frames.arrow is not an Arrow"):
        parse_episode(bad, entry_for(bad), "shard-000000.tar", ["cam"])
    bad = dict(members, **{"meta.msgpack": b"\xc1\xc1"})
    with pytest.raises(EpisodeError, match=r"episode_000001.meta.msgpack is not valid msgpack"):
        parse_episode(bad, entry_for(bad), "shard-000000.tar", ["cam"])


def test_manifest_mismatch():
    _, members = episode_members()
    with pytest.raises(EpisodeError, match=r"describes episode 1 of length 7, the manifest says episode 1 of length 9"):
        parse_episode(members, entry_for(members, length=9), "shard-000000.tar", ["cam"])


def _with_frames(members, table, compression=None, length=None):
    """``members`` with ``frames.arrow`` replaced by ``table`` and the metadata saying its length."""
    sink = io.BytesIO()
    options = pa.ipc.IpcWriteOptions(compression=compression) if compression else None
    with pa.ipc.new_file(sink, table.schema, options=options) as w:
        w.write_table(table)
    meta = ShardEpisodeMeta.from_dict(msgpack.unpackb(members["meta.msgpack"]), "test")
    meta = dataclasses.replace(meta, length=length or table.num_rows)
    return dict(members, **{"frames.arrow": sink.getvalue(), "meta.msgpack": msgpack.packb(meta.to_dict())})


def test_a_compressed_frame_table_is_refused_before_it_is_inflated():
    """A few KB of zstd that inflate to 64 MB: refused from the file's flatbuffers, nothing allocated."""
    table, members = episode_members()
    bomb = table.set_column(table.schema.get_field_index("observation.images.gripper"), "observation.images.gripper",
                            pa.array([{"bytes": bytes(64 << 20) if i == 0 else b"", "path": None}
                                      for i in range(table.num_rows)], table["observation.images.gripper"].type))
    bad = _with_frames(members, bomb, "zstd")
    assert len(bad["frames.arrow"]) < 100_000
    del bomb
    pool = pa.default_memory_pool()
    before = pool.max_memory()
    with pytest.raises(EpisodeError, match=r"episode 1: episode_000001.frames.arrow is compressed, frame tables are "
                                           r"stored uncompressed"):
        parse_episode(bad, entry_for(bad), "shard-000000.tar", ["cam"])
    assert pool.max_memory() - before < 8 << 20


def test_a_frame_table_claiming_more_rows_than_bytes_is_refused():
    """A column of Arrow's null type holds no data, so its length is free: 10**7 rows in a few hundred
    bytes would be cast to int64 (80 MB) before anything else looked at it."""
    _, members = episode_members()
    n = 10**7
    bad = _with_frames(members, pa.table({"frame_index": pa.nulls(n)}), length=n)
    pool = pa.default_memory_pool()
    before = pool.max_memory()
    with pytest.raises(EpisodeError, match=rf"frames.arrow claims {n} rows in \d+ bytes"):
        parse_episode(bad, entry_for(bad, length=n), "shard-000000.tar", ["cam"], declared={"frame_index": pa.int64()})
    assert pool.max_memory() - before < 8 << 20
