"""Live parity with lerobot itself (run with .venv-lerobot's python: lerobot 0.6.1, torch 2.11, torchcodec 0.11).

A dataset is written during the run by lerobot's own writer (testkit.lerobot_writer: two cameras,
several episodes, several data and video files), packed with our CLI (a real subprocess, several
shards), and then EVERY frame of EVERY episode is compared with ``LeRobotDataset[i]`` for the
``delta_timestamps`` lerobot-train gives ACT and Diffusion (``resolve_delta_timestamps`` on the
policies' default configs), and for no windows, with ``return_uint8`` off and on: the same keys, and
every tensor equal in dtype, shape and value; the same task string.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

lerobot = pytest.importorskip("lerobot", reason="live parity needs lerobot 0.6.1: run with .venv-lerobot (make test)")

from lerobot.datasets.factory import resolve_delta_timestamps  # noqa: E402
from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata  # noqa: E402
from lerobot.policies.act.configuration_act import ACTConfig  # noqa: E402
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig  # noqa: E402

from lerobot_wds.reader import LeRobotShardDataset  # noqa: E402
from testkit.lerobot_writer import write_lerobot_dataset  # noqa: E402

#: Every episode shorter than ACT's action window (100 steps), some shorter than Diffusion's (16), one of
#: 3 frames, so windows cross both episode ends. (lerobot 0.6.1's writer fails on a 1-frame episode: its stats.)
LENGTHS = [23, 41, 3, 12, 35, 17, 30]
CAMERAS = {"observation.images.top": (64, 80), "observation.images.wrist": (48, 64)}
POLICIES = {"act": ACTConfig, "diffusion": DiffusionConfig, "plain": None}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """(lerobot root, packed dir): written by lerobot's writer, packed by ``lerobot-wds pack``."""
    base = tmp_path_factory.mktemp("parity")
    src = write_lerobot_dataset(base / "lerobot", lengths=LENGTHS, cameras=CAMERAS, fps=30,
                                video_files_size_mb=0.03, data_files_size_mb=0.004, seed=11)
    out = base / "packed"
    cli = Path(sys.executable).parent / "lerobot-wds"
    subprocess.run([str(cli), "pack", str(src), str(out), "--shard-size", "60KB", "--no-progress"],
                   check=True, capture_output=True, text=True)
    return src, out


def test_written_by_lerobot_across_several_files(datasets):
    """The precondition of the parity tests: several data files, video files per camera and shards."""
    src, out = datasets
    info = json.loads((src / "meta" / "info.json").read_text())
    assert info["total_episodes"] == len(LENGTHS) and info["total_frames"] == sum(LENGTHS)
    assert len(list((src / "data").rglob("*.parquet"))) >= 2
    for key in CAMERAS:
        assert len(list((src / "videos" / key).rglob("*.mp4"))) >= 2, key
    assert len(list(out.glob("shard-*.tar"))) >= 2


def _delta_timestamps(policy: str, root: Path) -> dict | None:
    config = POLICIES[policy]
    return None if config is None else resolve_delta_timestamps(config(), LeRobotDatasetMetadata("parity", root=root))


@pytest.mark.parametrize("return_uint8", [False, True], ids=["float", "uint8"])
@pytest.mark.parametrize("policy", list(POLICIES))
def test_every_frame_equals_lerobot(datasets, policy, return_uint8):
    src, packed = datasets
    deltas = _delta_timestamps(policy, src)
    if policy != "plain":
        assert deltas and "action" in deltas  # the windows lerobot-train would use
    _assert_every_frame_equal(LeRobotDataset("parity", root=src, delta_timestamps=deltas, return_uint8=return_uint8),
                              LeRobotShardDataset(str(packed), delta_timestamps=deltas, return_uint8=return_uint8,
                                                  shuffle=False))


def test_parquet_types_other_than_declared_read_as_lerobot_reads_them(datasets, tmp_path):
    """The same dataset with observation.state stored as float64 lists (values float32 cannot hold
    exactly) and index as int32, while meta/info.json still declares float32 [6] and int64:
    LeRobotDataset casts the parquet to the declared features, and the packer does the same, so
    every frame is still lerobot's, rounded as lerobot rounds it."""
    src = Path(shutil.copytree(datasets[0], tmp_path / "retyped"))
    for path in sorted((src / "data").rglob("*.parquet")):
        table = pq.read_table(path)
        i = table.schema.get_field_index("observation.state")
        state = table.column(i).combine_chunks()
        values = np.asarray(state.flatten(), dtype=np.float64) * (1 + 1e-9)
        offsets = pa.array(np.arange(len(state) + 1, dtype=np.int32) * state.type.list_size)
        table = table.set_column(i, pa.field("observation.state", pa.list_(pa.float64())),
                                 pa.ListArray.from_arrays(offsets, pa.array(values)))
        i = table.schema.get_field_index("index")
        table = table.set_column(i, pa.field("index", pa.int32()), table.column(i).cast(pa.int32()))
        pq.write_table(table.replace_schema_metadata(None), path)
    out = tmp_path / "packed"
    cli = Path(sys.executable).parent / "lerobot-wds"
    subprocess.run([str(cli), "pack", str(src), str(out), "--no-progress"], check=True, capture_output=True, text=True)
    _assert_every_frame_equal(LeRobotDataset("retyped", root=src), LeRobotShardDataset(str(out), shuffle=False))


def _assert_every_frame_equal(theirs, ours, total: int = sum(LENGTHS)) -> None:
    seen = []
    for item in ours:
        i = int(item["index"])
        want = theirs[i]
        assert set(item) == set(want), f"index {i}: keys differ: {sorted(set(item) ^ set(want))}"
        for key, w in want.items():
            got = item[key]
            if isinstance(w, torch.Tensor):
                assert isinstance(got, torch.Tensor), f"index {i}, {key}: {type(got).__name__}, not a tensor"
                assert got.dtype == w.dtype and got.shape == w.shape, \
                    f"index {i}, {key}: {got.dtype}{tuple(got.shape)} != lerobot's {w.dtype}{tuple(w.shape)}"
                assert torch.equal(got, w), f"index {i}, {key}: values differ from lerobot's"
            else:
                assert got == w, f"index {i}, {key}: {got!r} != lerobot's {w!r}"
        seen.append(i)
    assert sorted(seen) == list(range(len(theirs))) == list(range(total))


DEPTH_MM, DEPTH_M = "observation.images.depth_mm", "observation.images.depth_m"


def _depth_dataset(root: Path, stored: str) -> tuple[Path, Path]:
    """(lerobot root, packed dir): two depth cameras written by lerobot's own writer, one recorded
    in uint16 millimetres, one in float32 metres. ``stored``: ``"video"`` (12-bit lossless HEVC,
    lerobot's default quantization: log, 0.01-10 m), ``"video-linear"`` (its linear one, 0.1-4 m)
    or ``"image"`` (TIFF images in the data files)."""
    from lerobot.configs.video import DepthEncoderConfig

    h, w = 42, 62
    rng = np.random.default_rng(3)

    def feature() -> dict:  # one each: lerobot's writer records the unit in this very dict
        return {"dtype": "image" if stored == "image" else "video", "shape": (h, w, 1),
                "names": ["height", "width", "channels"], "info": {"is_depth_map": True}}

    linear = {"depth_encoder": DepthEncoderConfig(depth_min=0.1, depth_max=4.0, use_log=False)}
    src = _write(root / "depth", {DEPTH_MM: feature(), DEPTH_M: feature()},
                 lambda i: {DEPTH_MM: (300 + 400 * i + rng.integers(0, 3000, (h, w, 1))).astype(np.uint16),
                            DEPTH_M: (0.2 + 0.3 * i + rng.random((h, w, 1)) * 2).astype(np.float32)},
                 **(linear if stored == "video-linear" else {}))
    out = root / "packed"
    cli = Path(sys.executable).parent / "lerobot-wds"
    subprocess.run([str(cli), "pack", str(src), str(out), "--no-progress"], check=True, capture_output=True, text=True)
    return src, out


@pytest.mark.parametrize("stored", ["video", "video-linear", "image"])
@pytest.mark.parametrize("unit", ["mm", "m"])
def test_depth_maps_equal_lerobot(tmp_path, stored, unit):
    """Depth cameras (``_depth_dataset``): every frame equals LeRobotDataset's (float32
    ``(1, H, W)`` in ``depth_output_unit``), in windows too, with ``return_uint8`` (which leaves
    depth maps float32), single samples and batches; the depth statistics are in that unit too."""
    src, out = _depth_dataset(tmp_path, stored)
    deltas = {DEPTH_MM: [-2 / 30, 0.0], "action": [0.0, 1 / 30]}
    theirs = LeRobotDataset("parity", root=src, delta_timestamps=deltas, depth_output_unit=unit, return_uint8=True)
    assert [theirs.meta.features[k]["info"]["depth_unit"] for k in (DEPTH_MM, DEPTH_M)] == ["mm", "m"]
    if stored != "image":
        assert theirs.meta.features[DEPTH_MM]["info"]["video.use_log"] is (stored == "video")
    assert theirs[7][DEPTH_MM].shape == (2, 1, 42, 62) and theirs[7][DEPTH_M].dtype == torch.float32
    ours = LeRobotShardDataset(str(out), shuffle=False, delta_timestamps=deltas, depth_output_unit=unit,
                               return_uint8=True)
    _assert_every_frame_equal(theirs, ours, total=12)
    batches = LeRobotShardDataset(str(out), shuffle=False, delta_timestamps=deltas, depth_output_unit=unit,
                                  return_uint8=True, batch_size=5)
    for batch in batches:
        for j, i in enumerate(batch["index"].tolist()):
            assert torch.equal(batch[DEPTH_MM][j], theirs[i][DEPTH_MM]) and torch.equal(batch[DEPTH_M][j], theirs[i][DEPTH_M])
    for key in (DEPTH_MM, DEPTH_M):
        assert set(ours.meta.stats[key]) == set(theirs.meta.stats[key])
        for stat, value in theirs.meta.stats[key].items():
            np.testing.assert_array_equal(ours.meta.stats[key][stat], value, err_msg=f"{key} {stat}")


def test_pack_with_a_codec_keeps_depth_clips_as_recorded(tmp_path):
    """``pack --codec`` re-encodes to 8-bit yuv420p, which would turn 12-bit depth codes into other
    values: depth cameras are remuxed as recorded, the same clip bytes as a plain pack (whose
    frames ``test_depth_maps_equal_lerobot`` compares with LeRobotDataset's)."""
    import json

    src, plain = _depth_dataset(tmp_path, "video")
    coded = tmp_path / "coded"
    cli = Path(sys.executable).parent / "lerobot-wds"
    subprocess.run([str(cli), "pack", str(src), str(coded), "--no-progress", "--codec", "h264"], check=True,
                   capture_output=True, text=True)
    manifests = [json.loads((d / "manifest.json").read_text()) for d in (plain, coded)]
    clips = [{(e["episode_index"], k): ref[2] for s in m["shards"] for e in s["episodes"]
              for k, ref in e["members"].items() if k.endswith(".mp4")} for m in manifests]
    assert clips[0] == clips[1] and len(clips[0]) > 0
    assert manifests[1]["videos"] == manifests[0]["videos"]
    assert {v["pix_fmt"] for v in manifests[1]["videos"].values()} == {"gray12le"}


def test_lerobots_dataset_factory_gives_depth_maps_in_its_depth_output_unit(tmp_path, monkeypatch):
    """lerobot-train's ``--dataset.depth_output_unit``: lerobot's own ``make_dataset``, building ours
    as ``lerobot-wds train`` has it do, passes it on, and the depth cameras keep their statistics
    (ImageNet's replace those of colour cameras only)."""
    from lerobot.configs.default import DatasetConfig
    from lerobot.configs.train import TrainPipelineConfig
    from lerobot.datasets import factory
    from lerobot_wds.reader import lerobot_train

    _, out = _depth_dataset(tmp_path, "video")
    monkeypatch.setattr(factory, "LeRobotDatasetMetadata", lerobot_train._metadata)
    monkeypatch.setattr(factory, "LeRobotDataset", lerobot_train._dataset)
    cfg = TrainPipelineConfig(dataset=DatasetConfig(repo_id="parity", root=str(out), depth_output_unit="m"),
                              policy=ACTConfig(device="cpu", push_to_hub=False, pretrained_backbone_weights=None))
    monkeypatch.setattr(lerobot_train._Run, "cfg", cfg)
    ds = factory.make_dataset(cfg)
    assert ds.depth_output_unit == "m"
    item = next(iter(ds))
    assert item[DEPTH_M].dtype == torch.float32 and float(item[DEPTH_M].max()) < 4.5  # metres, not millimetres
    stats = LeRobotShardDataset(str(out), depth_output_unit="m").meta.stats
    for key in (DEPTH_MM, DEPTH_M):
        np.testing.assert_array_equal(ds.meta.stats[key]["mean"], stats[key]["mean"])


def test_a_mixture_refuses_depth_maps_in_two_units(tmp_path):
    """Two sources whose depth camera comes out in different units (or as colour in one) would
    stack millimetres with metres in one batch: ``mix`` refuses, naming the key."""
    from lerobot_wds.reader import mix

    _, out = _depth_dataset(tmp_path, "video")
    mm, m = (LeRobotShardDataset(str(out), depth_output_unit=u) for u in ("mm", "m"))
    assert mix([mm, LeRobotShardDataset(str(out))]).keys
    with pytest.raises(ValueError, match=rf"mix: key '{DEPTH_MM}' differs between datasets .*'depth_mm'.*'depth_m'"):
        mix([mm, m])


def test_gpu_decoding_with_lerobots_torchcodec_is_a_usage_error(datasets):
    """lerobot 0.6.1 pins torchcodec below 0.12, whose PyPI wheels decode on the CPU alone, so
    ``video_decode_device="cuda"`` cannot work in its environment. The first sample says so, naming
    the option, with ``on_error="skip"`` too: not every episode skipped as damaged."""
    from lerobot_wds.errors import UsageError

    ds = LeRobotShardDataset(str(datasets[1]), video_decode_device="cuda", on_error="skip")
    with pytest.raises(UsageError, match=r"video_decode_device='cuda': torchcodec cannot decode there .*on the CPU"):
        next(iter(ds))
    assert ds.skipped == 0


@pytest.mark.parametrize("windows", [False, True], ids=["plain", "windows"])
def test_features_of_other_dtypes_come_out_as_lerobot_gives_them(tmp_path, windows):
    """Features of other dtypes than float32 and int64, written by lerobot's own writer: lerobot's
    samples hold every float as float32 and every integer as int64 (torch.tensor of the Python
    values), and so do ours, with the same values, in windows too."""
    rng = np.random.default_rng(1)
    src = _write(tmp_path / "dtypes", {
        "f64": {"dtype": "float64", "shape": (1,), "names": None},
        "f64v": {"dtype": "float64", "shape": (3,), "names": None},
        "f16v": {"dtype": "float16", "shape": (2,), "names": None},
        "u8": {"dtype": "uint8", "shape": (1,), "names": None},
        "i16v": {"dtype": "int16", "shape": (2,), "names": None},
        "i32m": {"dtype": "int32", "shape": (2, 2), "names": None},
        "f64m": {"dtype": "float64", "shape": (2, 2), "names": None},
        "flag": {"dtype": "bool", "shape": (1,), "names": None},
    }, lambda i: {"f64": np.array([rng.random() * 1e-3 + 0.1]), "f64v": rng.random(3),
                  "f16v": rng.random(2).astype(np.float16), "u8": np.array([200 + i], np.uint8),
                  "i16v": np.array([-3, i], np.int16), "i32m": np.arange(4, dtype=np.int32).reshape(2, 2) + i,
                  "f64m": rng.random((2, 2)), "flag": np.array([i % 2 == 1])})
    out = tmp_path / "packed"
    cli = Path(sys.executable).parent / "lerobot-wds"
    subprocess.run([str(cli), "pack", str(src), str(out), "--no-progress"], check=True, capture_output=True, text=True)
    deltas = {"f64v": [-1 / 30, 0.0], "i32m": [0.0, 1 / 30], "u8": [-2 / 30, 0.0]} if windows else None
    _assert_every_frame_equal(LeRobotDataset("parity", root=src, delta_timestamps=deltas),
                              LeRobotShardDataset(str(out), shuffle=False, delta_timestamps=deltas), total=12)


def _write(root: Path, features: dict, frame: Callable[[int], dict], **create: Any) -> Path:
    """Two episodes of 6 frames written by lerobot's own writer: ``features`` plus a 2-d state and
    action, ``frame(i)`` giving frame i's values of ``features``; ``create``: more arguments of
    ``LeRobotDataset.create``."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset as Writer

    both = {"observation.state": {"dtype": "float32", "shape": (2,), "names": ["a", "b"]},
            "action": {"dtype": "float32", "shape": (2,), "names": ["a", "b"]}}
    ds = Writer.create("parity", fps=30, features={**features, **both}, root=root, use_videos=True, **create)
    for _ in range(2):
        for i in range(6):
            ds.add_frame({**frame(i), "observation.state": np.zeros(2, np.float32),
                          "action": np.zeros(2, np.float32), "task": "look"})
        ds.save_episode()
    ds.finalize()
    return root


@pytest.mark.parametrize("return_uint8", [False, True], ids=["float", "uint8"])
def test_image_dtype_cameras_equal_lerobot(tmp_path, return_uint8):
    """A camera stored as PNG images in the data files (dtype image, lerobot's writer with
    ``use_videos=False`` for it) next to a video camera: every frame equal to LeRobotDataset's, with
    a window on the image camera; with ``return_uint8`` lerobot keeps image cameras float32."""
    src = write_lerobot_dataset(tmp_path / "images", lengths=[9, 4], cameras={"observation.images.top": (64, 80)},
                                image_cameras={"observation.images.wrist": (48, 64)}, fps=30, seed=5)
    out = tmp_path / "packed"
    cli = Path(sys.executable).parent / "lerobot-wds"
    subprocess.run([str(cli), "pack", str(src), str(out), "--no-progress"], check=True, capture_output=True, text=True)
    deltas = {"observation.images.wrist": [-2 / 30, 0.0], "action": [0.0, 1 / 30]}
    _assert_every_frame_equal(
        LeRobotDataset("parity", root=src, delta_timestamps=deltas, return_uint8=return_uint8),
        LeRobotShardDataset(str(out), shuffle=False, delta_timestamps=deltas, return_uint8=return_uint8), total=13)
