"""packer/synthetic*.py: generated LeRobot v3.0 datasets look like lerobot's and agree with themselves.

Real files throughout: mp4s encoded by libsvtav1/libx264, demuxed by PyAV, decoded by torchcodec.
Each frame carries its (episode, frame) index as a block code, so "frame i of episode e is at
from_timestamp + i / fps" is checked by content, not only by counting.
"""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from testkit.synthetic import main, read_code, render_frames, write_dataset

DATA = Path(__file__).parent / "data"
TOP, WRIST, GRIP = "observation.images.top", "observation.images.wrist", "observation.images.gripper"
LENGTHS = [9, 14, 5, 12, 20, 7]  # odd and even: with gop 2 the next start is or is not on a GOP grid


def _make(tmp_path_factory, name: str, **kw) -> Path:
    args = dict(episodes=LENGTHS, cameras={TOP: (64, 96), WRIST: (48, 64)}, video_files_size_mb=0.012,
                data_files_size_mb=0.004, seed=3)
    args.update(kw)
    return write_dataset(tmp_path_factory.mktemp(name) / "ds", **args)


@pytest.fixture(scope="module")
def av1(tmp_path_factory) -> Path:
    return _make(tmp_path_factory, "av1", image_cameras={GRIP: (48, 64)})


@pytest.fixture(scope="module")
def h264(tmp_path_factory) -> Path:
    return _make(tmp_path_factory, "h264", codec="h264", gop=6)


@pytest.fixture(scope="module")
def unaligned(tmp_path_factory) -> Path:
    return _make(tmp_path_factory, "unaligned", keyframe_aligned=False, gop=4)


def episodes(root: Path) -> list[dict]:
    return pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()


def video_files(root: Path, key: str) -> dict[Path, list[dict]]:
    """mp4 path -> the episode rows it holds, in file order."""
    files: dict[Path, list[dict]] = {}
    for ep in episodes(root):
        c, f = ep[f"videos/{key}/chunk_index"], ep[f"videos/{key}/file_index"]
        files.setdefault(root / f"videos/{key}/chunk-{c:03d}/file-{f:03d}.mp4", []).append(ep)
    return files


def packets(path: Path) -> list[tuple[int, int, bool]]:
    """(frame number by pts, dts, is_keyframe) of every packet, in presentation order."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        ticks = 1 / (s.time_base * s.average_rate)
        out = [(round(p.pts / ticks), p.dts, p.is_keyframe) for p in c.demux(s) if p.size]
    return sorted(out)


# --- layout: same files, keys, schemas and types as lerobot 0.6.1 wrote in the fixtures -------------

FIXTURES = {
    "lerobot_v3_av1": dict(episodes=[45, 80, 12, 60, 90, 33], cameras={TOP: (96, 128), WRIST: (64, 80)},
                           tasks=["pick up the red cube and place it in the bin", "open the top drawer",
                                  "fold the towel in half"],
                           video_files_size_mb=0.08, data_files_size_mb=0.015),
    "lerobot_v3_images": dict(episodes=[20, 7, 35, 18], fps=10, cameras={"observation.images.front": (72, 96)},
                              image_cameras={GRIP: (48, 64)}, state_dim=4, data_files_size_mb=0.2),
}


def _schema(path: Path) -> list[tuple[str, str]]:
    return [(f.name, str(f.type)) for f in pq.read_schema(path)]


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_layout_matches_lerobot_fixture(tmp_path, name):
    ours, theirs = write_dataset(tmp_path / name, **FIXTURES[name]), DATA / name
    a, b = (json.loads((r / "meta/info.json").read_text()) for r in (ours, theirs))
    assert list(a) == list(b)
    assert {k: v for k, v in a.items() if k not in ("robot_type", "features")} == {
        k: v for k, v in b.items() if k not in ("robot_type", "features")}
    assert list(a["features"]) == list(b["features"])
    for key, feature in b["features"].items():
        assert {**a["features"][key], "names": None} == {**feature, "names": None}, key
    for rel in ("meta/tasks.parquet", "meta/episodes/chunk-000/file-000.parquet", "data/chunk-000/file-000.parquet"):
        assert _schema(ours / rel) == _schema(theirs / rel), rel
    hf = [json.loads(pq.read_schema(r / "data/chunk-000/file-000.parquet").metadata[b"huggingface"]) for r in (ours, theirs)]
    assert hf[0]["info"] == hf[1]["info"]
    pandas = [json.loads(pq.read_schema(r / "meta/tasks.parquet").metadata[b"pandas"]) for r in (ours, theirs)]
    assert {**pandas[0], "creator": None} == {**pandas[1], "creator": None}
    assert pq.read_table(ours / "meta/tasks.parquet").to_pydict() == pq.read_table(theirs / "meta/tasks.parquet").to_pydict()
    sa, sb = (json.loads((r / "meta/stats.json").read_text()) for r in (ours, theirs))
    assert sorted(sa) == sorted(sb)
    for feature, stats in sb.items():
        assert list(sa[feature]) == list(stats), feature
        assert {k: np.shape(v) for k, v in sa[feature].items()} == {k: np.shape(v) for k, v in stats.items()}
    assert {p.relative_to(ours).parts[:3] for p in ours.rglob("*.mp4")} == {
        p.relative_to(theirs).parts[:3] for p in theirs.rglob("*.mp4")}  # videos/<key>/chunk-000
    import av

    time_base = {30: Fraction(1, 15360), 10: Fraction(1, 10240)}[FIXTURES[name].get("fps", 30)]
    for r in (ours, theirs):  # lerobot's mp4 time base and pixel format
        with av.open(str(next(r.rglob("file-000.mp4")))) as c:
            stream = c.streams.video[0]
            assert (stream.time_base, stream.codec_context.pix_fmt) == (time_base, "yuv420p"), r


# --- the dataset agrees with itself ------------------------------------------------------------------

@pytest.mark.parametrize("ds", ["av1", "h264", "unaligned"])
def test_metadata_agrees_with_itself(ds, request):
    root = request.getfixturevalue(ds)
    info = json.loads((root / "meta/info.json").read_text())
    eps, fps = episodes(root), info["fps"]
    assert [e["length"] for e in eps] == LENGTHS and info["total_frames"] == sum(LENGTHS)
    assert [e["dataset_from_index"] for e in eps] == list(np.cumsum([0] + LENGTHS[:-1]))
    assert all(e["dataset_to_index"] - e["dataset_from_index"] == e["length"] for e in eps)
    data = {}
    for path in sorted(root.glob("data/chunk-*/file-*.parquet")):
        f = pq.ParquetFile(path)
        rows = [f.metadata.row_group(i).num_rows for i in range(f.metadata.num_row_groups)]
        held = [e for e in eps if (root / f"data/chunk-{e['data/chunk_index']:03d}/file-{e['data/file_index']:03d}.parquet") == path]
        assert rows == [e["length"] for e in held], path  # one row group per episode, in order
        data.update({e["episode_index"]: t for e, t in zip(held, (f.read_row_group(i) for i in range(len(rows))))})
    assert len(list(root.glob("data/chunk-*/file-*.parquet"))) > 1  # rolled over by size
    for e in eps:
        t = data[e["episode_index"]]
        assert t["index"].to_pylist() == list(range(e["dataset_from_index"], e["dataset_to_index"]))
        assert t["frame_index"].to_pylist() == list(range(e["length"]))
        np.testing.assert_array_equal(t["timestamp"].to_numpy(), (np.arange(e["length"]) / fps).astype(np.float32))
    for key in (TOP, WRIST):
        files = video_files(root, key)
        assert len(files) > 1, key  # rolled over by size
        for path, held in files.items():
            assert len(packets(path)) == sum(e["length"] for e in held), path
            before = 0
            for e in held:
                start, end = e[f"videos/{key}/from_timestamp"], e[f"videos/{key}/to_timestamp"]
                assert start == pytest.approx(before / fps, abs=1e-9)
                assert end - start == pytest.approx(e["length"] / fps, abs=1e-9)
                before += e["length"]


@pytest.mark.parametrize("ds", ["av1", "h264", "unaligned"])
def test_frames_decode_at_their_timestamps(ds, request):
    from torchcodec.decoders import VideoDecoder

    root = request.getfixturevalue(ds)
    for key in (TOP, WRIST):
        for path, held in video_files(root, key).items():
            decoder = VideoDecoder(str(path))
            for e in held:
                start = e[f"videos/{key}/from_timestamp"]
                indices = [round((start + i / 30) * 30) for i in range(e["length"])]
                frames = decoder.get_frames_at(indices).data.permute(0, 2, 3, 1).numpy()
                codes = [read_code(f) for f in frames]
                assert codes == [(e["episode_index"], i) for i in range(e["length"])], (path, e["episode_index"])


def test_cameras_roll_over_independently(av1):
    top = [e["videos/observation.images.top/file_index"] for e in episodes(av1)]
    wrist = [e["videos/observation.images.wrist/file_index"] for e in episodes(av1)]
    assert top != wrist and top == sorted(top) and wrist == sorted(wrist)


# --- keyframes and codecs -----------------------------------------------------------------------------

@pytest.mark.parametrize("ds", ["av1", "h264"])
def test_aligned_episodes_start_on_keyframes(ds, request):
    for key in (TOP, WRIST):
        for path, held in video_files(request.getfixturevalue(ds), key).items():
            key_frames = {n for n, _, k in packets(path) if k}
            starts = np.cumsum([0] + [e["length"] for e in held[:-1]])
            assert set(starts) <= key_frames, path


def test_unaligned_episodes_start_inside_gops(unaligned):
    not_key = 0
    for key in (TOP, WRIST):
        for path, held in video_files(unaligned, key).items():
            pk = packets(path)
            assert [n for n, _, k in pk if k] == list(range(0, len(pk), 4)), path  # whole file, gop 4
            starts = np.cumsum([0] + [e["length"] for e in held[:-1]])
            not_key += sum(1 for s in starts if not pk[s][2])
    assert not_key >= 2


def test_h264_reorders_frames(h264):
    path = next(iter(video_files(h264, TOP)))
    pk = packets(path)
    assert any(dts != n * 512 for n, dts, _ in pk), "expected B-frames: dts differs from pts"


# --- image cameras, errors, CLI -----------------------------------------------------------------------

def test_image_camera_is_png_of_the_rendered_frame(av1):
    image = pytest.importorskip("PIL.Image")
    table = pq.read_table(av1 / "data/chunk-000/file-000.parquet")
    assert str(table.schema.field(GRIP).type) == "struct<bytes: binary, path: string>"
    first = table.filter(table["episode_index"].to_numpy() == 0)
    expected = render_frames(0, LENGTHS[0], (48, 64), seed=3)
    for i, cell in enumerate(first[GRIP].to_pylist()):
        assert cell["path"] == f"frame-{i:06d}.png"
        np.testing.assert_array_equal(np.asarray(image.open(io.BytesIO(cell["bytes"])).convert("RGB")), expected[i])



def test_texture_raises_bitrate_and_keeps_the_code(tmp_path):
    """Grain + sensor noise: frames differ from the flat drawing, codes still read after AV1, packets grow."""
    import av

    from testkit.synthetic_video import encode_episode

    flat, rough = render_frames(2, 12, (96, 128), seed=1), render_frames(2, 12, (96, 128), seed=1, texture=10)
    assert np.abs(flat.astype(int) - rough).mean() > 4  # changed everywhere, not only around the code
    assert not np.array_equal(rough[0], rough[1])
    np.testing.assert_array_equal(rough, render_frames(2, 12, (96, 128), seed=1, texture=10))  # deterministic
    sizes = {}
    for name, frames in (("flat", flat), ("rough", rough)):
        data = encode_episode(frames, 30, "av1", 2)
        sizes[name] = len(data)
        (tmp_path / f"{name}.mp4").write_bytes(data)
        with av.open(str(tmp_path / f"{name}.mp4")) as c:
            decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert [read_code(f) for f in decoded] == [(2, i) for i in range(12)]
    assert sizes["rough"] > 4 * sizes["flat"]
    with pytest.raises(ValueError, match="texture=-1"):
        render_frames(0, 2, (32, 48), seed=0, texture=-1)

def test_refuses_bad_arguments(tmp_path, av1):
    with pytest.raises(FileExistsError, match="not empty"):
        write_dataset(av1, episodes=[3], cameras={TOP: (64, 96)})
    with pytest.raises(ValueError, match="choices"):
        write_dataset(tmp_path / "x", episodes=[3], cameras={TOP: (64, 96)}, codec="vp9")
    with pytest.raises(ValueError, match="observation.images.top: camera size 20x30"):
        write_dataset(tmp_path / "y", episodes=[3], cameras={TOP: (20, 30)})
    assert not (tmp_path / "y").exists()  # checked before anything is written
    with pytest.raises(ValueError, match="gop=0"):
        write_dataset(tmp_path / "z", episodes=[3], cameras={TOP: (64, 96)}, gop=0)


def test_same_arguments_give_identical_files(tmp_path):
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    kw = dict(episodes=[6, 9, 4], cameras={TOP: (32, 48)}, image_cameras={GRIP: (32, 48)}, video_files_size_mb=0.004)
    a, b = (files(write_dataset(tmp_path / name, **kw)) for name in "ab")
    assert len(a) >= 6 and a == b


def test_cli(tmp_path):
    out = tmp_path / "cli"
    assert main([str(out), "--episodes", "3", "--length", "4-6", "--camera", f"{TOP}=48x64", "--seed", "1"]) == 0
    info = json.loads((out / "meta/info.json").read_text())
    assert info["total_episodes"] == 3 and 12 <= info["total_frames"] <= 18
    assert info["features"][TOP]["shape"] == [48, 64, 3]


# --- end to end: the packer packs generated datasets and clips decode bit-identical ----------------

@pytest.mark.parametrize("ds", ["av1", "h264", "unaligned"])
def test_packs_and_clips_decode_bit_identical(ds, request, tmp_path):
    import msgpack
    import pyarrow as pa
    import torch
    from torchcodec.decoders import VideoDecoder

    from lerobot_wds.packer.pack import PackOptions, pack

    root = request.getfixturevalue(ds)
    m = pack(str(root), str(tmp_path / "packed"), PackOptions(shard_size=20_000, progress=False))
    assert m.total_episodes == len(LENGTHS) and m.total_frames == sum(LENGTHS) and len(m.shards) > 1
    rows = {e["episode_index"]: e for e in episodes(root)}
    sources = {}
    lead_ins = []
    for shard in m.shards:
        blob = (tmp_path / "packed" / shard.name).read_bytes()
        for entry in shard.episodes:
            e, n = rows[entry.episode_index], entry.length

            def member(suffix: str) -> bytes:
                ref = entry.members[suffix]
                return blob[ref.offset : ref.offset + ref.size]

            meta = msgpack.unpackb(member("meta.msgpack"))
            table = pa.ipc.open_file(member("frames.arrow")).read_all()
            data = pq.read_table(root / f"data/chunk-{e['data/chunk_index']:03d}/file-{e['data/file_index']:03d}.parquet")
            want_rows = data.filter(data["episode_index"].to_numpy() == entry.episode_index)
            assert table.to_pydict() == want_rows.select(table.column_names).to_pydict()
            for key in (TOP, WRIST):
                rel = f"videos/{key}/chunk-{e[f'videos/{key}/chunk_index']:03d}/file-{e[f'videos/{key}/file_index']:03d}.mp4"
                src = sources.setdefault(rel, VideoDecoder(str(root / rel), seek_mode="exact"))
                first = round(e[f"videos/{key}/from_timestamp"] * 30)
                lead = meta["clips"][key]["lead_in"]
                got = VideoDecoder(member(f"{key}.mp4"), seek_mode="exact").get_frames_at([lead + i for i in range(n)]).data
                assert torch.equal(got, src.get_frames_at([first + i for i in range(n)]).data), (rel, entry.episode_index)
                assert read_code(got[0].permute(1, 2, 0).numpy()) == (entry.episode_index, 0)
                lead_ins.append(lead)
    if ds == "unaligned":
        assert any(lead > 0 for lead in lead_ins), lead_ins
    else:
        assert set(lead_ins) == {0}
