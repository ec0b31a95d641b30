"""Integrity on read: every member's XXH3-64 from the manifest is checked on every ranged read.

Each case damages a real packed copy of the AV1 fixture (shard bytes, or the manifest's member
ranges) and reads it through the dataset as training does: a wrong byte never becomes a sample;
the error names shard, episode and member, and ``on_error="skip"`` skips and counts. A version-1
pack (no checksums) is still read, unchecked, with a warning.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import msgpack
import numpy as np
import pyarrow as pa
import pytest
import torch

from lerobot_wds import LeRobotShardDataset
from lerobot_wds.packer.shards import ShardWriter
from lerobot_wds.reader.episodes import EpisodeError
from reader_helpers import assert_sample_equal, expected, pack_fixture

TOP = "observation.images.top.mp4"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return Path(pack_fixture("lerobot_v3_av1", tmp_path_factory.mktemp("pristine")))


@pytest.fixture
def pack(pristine, tmp_path) -> Path:
    out = tmp_path / "pack"
    shutil.copytree(pristine, out)
    return out


@pytest.fixture
def images_pack(tmp_path) -> Path:
    """The fixture with an image-dtype camera (observation.images.gripper, 64x48 PNGs), packed."""
    return Path(pack_fixture("lerobot_v3_images", tmp_path / "images"))


def _manifest(pack: Path) -> dict:
    return json.loads((pack / "manifest.json").read_text())


def _write(pack: Path, m: dict) -> None:
    (pack / "manifest.json").write_text(json.dumps(m))


def _flip(pack: Path, suffix: str, n: int) -> tuple[str, int]:
    """Flip ``n`` bytes in the middle of the first episode's member ``suffix``; (shard, episode)."""
    shard = _manifest(pack)["shards"][0]
    ep = shard["episodes"][0]
    offset, size = ep["members"][suffix][:2]
    path = pack / shard["name"]
    data = bytearray(path.read_bytes())
    start = offset + size // 2
    data[start : start + n] = bytes(b ^ 0xFF for b in data[start : start + n])
    path.write_bytes(bytes(data))
    return shard["name"], ep["episode_index"]


def _read_all(pack: Path, **kw) -> list[dict]:
    return list(LeRobotShardDataset(str(pack), shuffle=False, **kw))


@pytest.mark.parametrize("suffix, n", [("frames.arrow", 16), (TOP, 64)])
def test_flipped_bytes_are_an_error_naming_the_member(pack, suffix, n):
    shard, episode = _flip(pack, suffix, n)
    with pytest.raises(EpisodeError, match=rf"{shard}, episode {episode}: member episode_{episode:06d}\.{suffix} fails its checksum"):
        _read_all(pack)


def test_flipped_bytes_are_skipped_and_counted(pack):
    _flip(pack, "frames.arrow", 16)
    length = _manifest(pack)["shards"][0]["episodes"][0]["length"]
    ds = LeRobotShardDataset(str(pack), shuffle=False, on_error="skip")
    items = list(ds)
    assert len(items) == 320 - length and ds.skipped == length
    assert 0 not in {int(i["episode_index"]) for i in items}


@pytest.mark.parametrize("with_checksum", [False, True])
def test_clip_pointed_at_another_episodes_bytes(pack, with_checksum):
    """Every member's range must hold the member it names (its tar header says so): a manifest
    pointing a clip at another episode's clip is refused even when it carries that clip's checksum."""
    m = _manifest(pack)
    eps = next(s["episodes"] for s in m["shards"] if len(s["episodes"]) >= 2)
    n = 3 if with_checksum else 2
    eps[0]["members"][TOP][:n] = eps[1]["members"][TOP][:n]  # the next episode's clip
    _write(pack, m)
    e = eps[0]["episode_index"]
    with pytest.raises(EpisodeError, match=rf"episode {e}: member episode_{e:06d}\.{TOP} is not at offset"):
        _read_all(pack)


@pytest.mark.parametrize("with_checksums", [False, True])
def test_swapped_cameras(pack, with_checksums):
    """Cameras swapped in the manifest, with or without their checksums following (a consistent
    liar), never hand out one camera's frames as another's."""
    m = _manifest(pack)
    members = m["shards"][0]["episodes"][0]["members"]
    wrist = "observation.images.wrist.mp4"
    members[TOP], members[wrist] = members[wrist], members[TOP]
    if not with_checksums:
        members[TOP][2], members[wrist][2] = members[wrist][2], members[TOP][2]
    _write(pack, m)
    with pytest.raises(EpisodeError, match=r"member episode_000000\.observation\.images\.(top|wrist)\.mp4 is not at offset"):
        _read_all(pack)
    ds = LeRobotShardDataset(str(pack), shuffle=False, on_error="skip")
    length = m["shards"][0]["episodes"][0]["length"]
    assert len(list(ds)) == 320 - length and ds.skipped == length


@pytest.mark.parametrize("lie", ["flipped", "another episode's"])
def test_the_episodes_tasks_are_checked_as_the_episode_is(pack, lie):
    """``meta.episodes["tasks"]`` reads each episode's meta.msgpack alone (not the whole episode):
    a damaged byte, or a range pointed at another episode's member with its checksum, is an error
    there too, never another task string."""
    if lie == "flipped":
        shard, episode = _flip(pack, "meta.msgpack", 1)
        message = rf"{shard}, episode {episode}: member episode_{episode:06d}\.meta\.msgpack fails its checksum"
    else:
        m = _manifest(pack)
        eps = next(s["episodes"] for s in m["shards"] if len(s["episodes"]) >= 2)
        eps[0]["members"]["meta.msgpack"] = eps[1]["members"]["meta.msgpack"]
        _write(pack, m)
        e = eps[0]["episode_index"]
        message = rf"episode {e}: member episode_{e:06d}\.meta\.msgpack is not at offset"
    with pytest.raises(EpisodeError, match=message):
        LeRobotShardDataset(str(pack)).meta.episodes["tasks"]


def test_verify_finds_what_the_reader_refuses(pack):
    m = _manifest(pack)
    eps = m["shards"][0]["episodes"]
    eps[0]["members"][TOP][2] = "0" * 16
    _write(pack, m)
    r = subprocess.run([sys.executable, "-m", "lerobot_wds.packer.cli", "verify", str(pack)], capture_output=True, text=True)
    assert r.returncode == 1 and f"member episode_000000.{TOP} fails its checksum" in r.stdout


def test_verify_and_reader_refuse_a_dataset_size_the_clips_do_not_have(pack):
    """The manifest's camera size is checked against every clip by the reader and by verify alike."""
    m = _manifest(pack)
    top = TOP.removesuffix(".mp4")
    w, h = m["videos"][top]["width"], m["videos"][top]["height"]
    m["videos"][top]["width"] = w * 2
    _write(pack, m)
    said = f"decodes at {w}x{h}, its metadata says {w}x{h}, the dataset {w * 2}x{h}"
    with pytest.raises(EpisodeError, match=f"clip of camera '{top}' {said}; repack this episode"):
        _read_all(pack)
    r = subprocess.run([sys.executable, "-m", "lerobot_wds.packer.cli", "verify", str(pack)], capture_output=True, text=True)
    assert r.returncode == 1 and f"episode_000000.{TOP}: {said}" in r.stdout


def test_version_1_pack_is_read_unchecked_with_a_warning(pack, caplog):
    m = _manifest(pack)
    m["format_version"] = 1
    for s in m["shards"]:
        for e in s["episodes"]:
            e["members"] = {k: v[:2] for k, v in e["members"].items()}
    _write(pack, m)
    js, npz = expected("lerobot_v3_av1", "plain")
    with caplog.at_level(logging.WARNING, logger="lerobot_wds.reader.dataset"):
        items = _read_all(pack)
    assert "carry no checksum (packed with format version 1)" in caplog.text
    by_index = {int(i["index"]): i for i in items}
    assert sorted(by_index) == list(range(320))
    for index in js["indices"]:
        assert_sample_equal(by_index[index], index, js, npz)


def test_malformed_checksum_is_a_manifest_error(pack):
    m = _manifest(pack)
    m["shards"][0]["episodes"][0]["members"][TOP][2] = "../../etc"
    _write(pack, m)
    with pytest.raises(ValueError, match="member checksum '../../etc' is not 16 hex digits"):
        LeRobotShardDataset(str(pack))


def _rewrite_first_episode(pack: Path, change: Callable[[dict[str, bytes]], None]) -> tuple[int, int]:
    """Rewrite the first shard with ``change`` applied to its first episode's members (suffix →
    bytes), headers, ranges and checksums all consistent with the new bytes (a consistent liar);
    returns that episode's (episode_index, length)."""
    m = _manifest(pack)
    shard = m["shards"][0]
    data = (pack / shard["name"]).read_bytes()
    out = io.BytesIO()
    writer = ShardWriter(out)
    for i, e in enumerate(shard["episodes"]):
        got = {k: data[off : off + size] for k, (off, size, _) in e["members"].items()}
        if i == 0:
            change(got)
        refs = writer.add_sample(f"episode_{e['episode_index']:06d}", got)
        e["members"] = {k: r.to_list() for k, r in refs.items()}
    writer.close()
    (pack / shard["name"]).write_bytes(out.getvalue())
    shard["bytes"] = len(out.getvalue())
    _write(pack, m)
    return shard["episodes"][0]["episode_index"], shard["episodes"][0]["length"]


def _refused_and_skipped(pack: Path, message: str, length: int) -> None:
    with pytest.raises(EpisodeError, match=message):
        _read_all(pack)
    ds = LeRobotShardDataset(str(pack), shuffle=False, on_error="skip")
    assert len(list(ds)) == 320 - length and ds.skipped == length


def test_a_consistent_shard_with_a_clip_of_another_size_is_refused(pack):
    """A shard and manifest that agree with each other (headers, ranges, checksums) but hold the
    wrist clip under the top camera's name: the clip decodes at another size than the episode's
    metadata and the dataset say, so it is refused (or skipped), never handed out as the top camera."""
    def swap(members: dict[str, bytes]) -> None:
        members[TOP] = members["observation.images.wrist.mp4"]

    e, length = _rewrite_first_episode(pack, swap)
    _refused_and_skipped(pack, rf"episode {e}: clip of camera 'observation.images.top' decodes at 80x64, "
                               r"its metadata says 128x96, the dataset 128x96", length)


def _clip_changing_size(first: tuple[int, int], then: tuple[int, int], n_first: int, n: int) -> bytes:
    """An mp4 (MPEG-4 part 2, whose in-band headers may change the size) of ``n`` frames: the first
    ``n_first`` at ``first`` (width, height), the rest at ``then``. Its container header says ``first``."""
    import fractions

    import av

    def encode(size: tuple[int, int], count: int) -> bytes:
        codec = av.CodecContext.create("mpeg4", "w")
        codec.width, codec.height, codec.pix_fmt, codec.time_base = *size, "yuv420p", fractions.Fraction(1, 30)
        out = b""
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), 60 + i, np.uint8), format="rgb24")
            out += b"".join(bytes(p) for p in codec.encode(frame.reformat(format="yuv420p")))
        return out + b"".join(bytes(p) for p in codec.encode(None))

    source = av.open(io.BytesIO(encode(first, n_first) + encode(then, n - n_first)), format="m4v")
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as mp4:
        stream = mp4.add_stream_from_template(source.streams.video[0])
        stream.time_base = fractions.Fraction(1, 30)
        for i, packet in enumerate(p for p in source.demux(video=0) if p.size):
            packet.pts = packet.dts = i
            packet.duration, packet.time_base, packet.stream = 1, stream.time_base, stream
            mp4.mux(packet)
    return buf.getvalue()


@pytest.mark.parametrize("batch_size", [None, 8])
def test_a_clip_that_changes_size_midway_is_refused(pack, batch_size):
    """A clip whose header (and so the size checks when it opens) says the camera's size but whose
    frames change size after a few: each decoded frame is checked, never handed out at another size
    (single samples) nor a raw error from writing it into its batch row."""
    meta = msgpack.unpackb(_manifest_first_meta(pack))
    info = meta["clips"]["observation.images.top"]
    lead, length = info["lead_in"], meta["length"]
    clip = _clip_changing_size((info["width"], info["height"]), (256, 192), lead + 5, lead + length)

    def swap(members: dict[str, bytes]) -> None:
        members[TOP] = clip

    e, _ = _rewrite_first_episode(pack, swap)
    with pytest.raises(EpisodeError, match=rf"episode {e}: frame 5 of camera 'observation.images.top' decodes at "
                                           rf"256x192, its header and metadata say {info['width']}x{info['height']}"):
        list(LeRobotShardDataset(str(pack), shuffle=False, batch_size=batch_size))
    import hashlib

    from lerobot_wds.packer.verify import verify

    m = _manifest(pack)  # verify checks the whole shard's sha256 first: a consistent liar updates it too
    m["shards"][0]["sha256"] = hashlib.sha256((pack / m["shards"][0]["name"]).read_bytes()).hexdigest()
    _write(pack, m)
    problems = verify(str(pack), full=True)
    assert any(f"episode_{e:06d}.{TOP}: decodes at 256x192" in p for p in problems), problems


def test_a_negative_lead_in_is_refused(pack):
    """torchcodec counts a negative index from the clip's end: a lead_in of -1 would hand out the
    clip's last frame as the episode's first, every frame one off."""
    def shift(members: dict[str, bytes]) -> None:
        meta = msgpack.unpackb(members["meta.msgpack"])
        meta["clips"]["observation.images.top"]["lead_in"] = -1
        members["meta.msgpack"] = msgpack.packb(meta)

    e, length = _rewrite_first_episode(pack, shift)
    _refused_and_skipped(pack, rf"episode {e}: episode_{e:06d}\.meta\.msgpack: malformed episode metadata \(clip info "
                               r"lead_in -1 is not a whole number from 0", length)


def _manifest_first_meta(pack: Path) -> bytes:
    """The first episode's meta.msgpack bytes."""
    m = _manifest(pack)
    off, size = m["shards"][0]["episodes"][0]["members"]["meta.msgpack"][:2]
    return (pack / m["shards"][0]["name"]).read_bytes()[off : off + size]


def _frames(members: dict[str, bytes]) -> pa.Table:
    return pa.ipc.open_file(pa.BufferReader(members["frames.arrow"])).read_all()


def _set_frames(members: dict[str, bytes], table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    members["frames.arrow"] = sink.getvalue().to_pybytes()


def test_a_frame_table_whose_offsets_point_outside_its_buffers_is_refused(pack):
    """A consistent liar's frame table with a list column whose offsets run past its values. It is not
    valid Arrow data and was read as stored: the rows of this vector column were cut where the reader
    assumes, not where the table says, and a binary column's rows (image bytes) would be read past
    their buffer (pyarrow does not check offsets on access). The reader now validates the whole
    table first and refuses it, naming the member."""
    def corrupt(members: dict[str, bytes]) -> None:
        table = _frames(members)
        state = table.column("observation.state").combine_chunks()
        n, width = len(state), state.type.list_size
        offsets = np.arange(n + 1, dtype=np.int32) * width
        offsets[1] = 10**6  # row 0 would read a megabyte past the values; the last offset is in bounds
        bad = pa.Array.from_buffers(pa.list_(pa.float32()), n, [None, pa.py_buffer(offsets.tobytes())],
                                    children=[state.flatten()])
        i = table.schema.get_field_index("observation.state")
        _set_frames(members, table.set_column(i, pa.field("observation.state", bad.type), bad))

    e, length = _rewrite_first_episode(pack, corrupt)
    _refused_and_skipped(pack, rf"episode {e}: episode_{e:06d}\.frames\.arrow is not valid Arrow data "
                               r".*offset.*; the manifest's features do not describe this shard, repack it", length)


def test_a_frame_table_of_other_types_than_declared_is_read_as_the_declared_types(pack):
    """A frame table holding observation.state as float64 lists (what packs made before the packer
    converted to the declared types hold, for sources stored that way): converted on read as
    LeRobotDataset converts its parquet, so the samples are lerobot's own."""
    def widen(members: dict[str, bytes]) -> None:
        table = _frames(members)
        i = table.schema.get_field_index("observation.state")
        col = table.column(i).cast(pa.list_(pa.float64()))
        _set_frames(members, table.set_column(i, pa.field("observation.state", col.type), col))

    _rewrite_first_episode(pack, widen)
    js, npz = expected("lerobot_v3_av1", "plain")
    by_index = {int(i["index"]): i for i in _read_all(pack)}
    for index in js["indices"]:
        assert_sample_equal(by_index[index], index, js, npz)


@pytest.mark.parametrize("lie", ["wider", "extra", "missing"])
def test_a_frame_table_that_is_not_the_declared_features_is_refused(pack, lie):
    """A consistent liar's frame table with a vector of another width than the manifest declares, a
    column the features do not have, or without one they do: refused, never a sample of other keys
    or shapes than the dataset's."""
    def change(members: dict[str, bytes]) -> None:
        table = _frames(members)
        if lie == "wider":
            state = table.column("observation.state").combine_chunks()
            values = np.asarray(state.flatten()).reshape(len(state), -1)
            wider = np.concatenate([values, values[:, :1]], axis=1).astype(np.float32)
            col = pa.FixedSizeListArray.from_arrays(pa.array(wider.reshape(-1)), wider.shape[1])
            table = table.set_column(table.schema.get_field_index("observation.state"),
                                     pa.field("observation.state", col.type), col)
        elif lie == "extra":
            table = table.append_column("observation.secret", pa.array(np.zeros(table.num_rows, np.float32)))
        else:
            table = table.drop_columns(["action"])
        _set_frames(members, table)

    e, length = _rewrite_first_episode(pack, change)
    said = {"wider": r"column 'observation.state' of type fixed_size_list<.*>\[7\] does not convert to the "
                     r"declared fixed_size_list<.*>\[6\]",
            "extra": r"has columns \[.*'observation.secret'\], the features declare \[",
            "missing": r"has columns \[.*\], the features declare \[.*'action'"}[lie]
    _refused_and_skipped(pack, rf"episode {e}: episode_{e:06d}\.frames\.arrow {said}", length)


def _png(width: int, height: int, rows: int | None = None) -> bytes:
    """A PNG of ``width`` x ``height`` black pixels, valid chunks and checksums; with ``rows``, the
    pixel data holds only that many rows (a header that claims more than the data)."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    pixels = b"".join(b"\0" + b"\0" * 3 * width for _ in range(height if rows is None else rows))
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b"")


def _tiff(width: int, height: int) -> bytes:
    """A little-endian 16-bit grayscale TIFF whose directory says ``width`` x ``height`` over a strip
    of 64 bytes (lerobot stores depth images as TIFF; a decoder allocates the whole image first)."""
    import struct

    entries = [(256, 4, width), (257, 4, height), (258, 3, 16), (259, 3, 1), (262, 3, 1), (273, 4, 0),
               (277, 3, 1), (278, 4, height), (279, 4, 64)]
    ifd_at, data_at = 8, 8 + 2 + 12 * len(entries) + 4
    entries = [(t, k, data_at if t == 273 else v) for t, k, v in entries]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", t, k, 1) + (struct.pack("<HH", v, 0) if k == 3 else struct.pack("<I", v))
        for t, k, v in entries) + struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", ifd_at) + ifd + bytes(64)


@pytest.mark.parametrize("size", [(32, 32), (100_000, 100_000), (12_000, 12_000)], ids=["smaller", "huge", "huge tiff"])
def test_an_image_of_another_size_than_declared_is_refused(images_pack, size):
    """A consistent liar's frame table whose image-dtype camera holds, in one frame, a PNG of another
    size than the dataset's 64x48: refused naming camera and frame, never a sample of another shape;
    a PNG claiming 100,000 x 100,000 pixels is refused from its header, before any decoding (torchcodec,
    which decoded these images before, tried to allocate 30 GB for it), and so is a TIFF claiming
    12,000 x 12,000 (under PIL's decompression-bomb limit, PIL allocated 288 MB for it first)."""
    width, height = size
    image = _tiff(width, height) if width == 12_000 else _png(width, height, rows=None if width < 1000 else 1)

    def change(members: dict[str, bytes]) -> None:
        table = _frames(members)
        i = table.schema.get_field_index("observation.images.gripper")
        rows = table.column(i).to_pylist()
        rows[3] = {**rows[3], "bytes": image}
        _set_frames(members, table.set_column(i, table.schema.field(i), pa.array(rows, table.schema.field(i).type)))

    m = _manifest(images_pack)
    total = sum(e["length"] for sh in m["shards"] for e in sh["episodes"])
    e, length = _rewrite_first_episode(images_pack, change)
    said = "is" if width > 1000 else "(is|decodes at)"
    with pytest.raises(EpisodeError, match=rf"episode {e}: image 'observation.images.gripper' of frame 3 {said} "
                                           rf"{width}x{height}, the dataset says 64x48"):
        list(LeRobotShardDataset(str(images_pack), shuffle=False))
    ds = LeRobotShardDataset(str(images_pack), shuffle=False, on_error="skip")
    assert len(list(ds)) == total - 1 and ds.skipped == 1


def test_an_image_stored_turned_by_its_exif_orientation_is_read_turned(images_pack):
    """A JPEG stored 48 wide and 64 high whose EXIF orientation turns it to the dataset's 64x48: read
    as the Hugging Face Image feature lerobot reads through reads it, turned, not refused for its
    header's width and height."""
    from PIL import Image, ImageOps

    turned = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(turned, 1)))  # 64 high, 48 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turn 90 degrees clockwise to view
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95, exif=exif.tobytes())

    def change(members: dict[str, bytes]) -> None:
        table = _frames(members)
        i = table.schema.get_field_index("observation.images.gripper")
        rows = table.column(i).to_pylist()
        rows[3] = {**rows[3], "bytes": buf.getvalue()}
        _set_frames(members, table.set_column(i, table.schema.field(i), pa.array(rows, table.schema.field(i).type)))

    e, _ = _rewrite_first_episode(images_pack, change)
    item = next(x for x in LeRobotShardDataset(str(images_pack), shuffle=False)
                if int(x["episode_index"]) == e and int(x["frame_index"]) == 3)
    viewed = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
    want = torch.from_numpy(viewed.copy()).permute(2, 0, 1).to(torch.float32).div(255)
    assert tuple(item["observation.images.gripper"].shape) == (3, 48, 64)
    assert torch.equal(item["observation.images.gripper"], want)
