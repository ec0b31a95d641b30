"""reader/dataset.py end to end: real packed shards, real DataLoaders, compared with lerobot's values."""

import json
import shutil
import subprocess
import sys
import threading

import pytest
import torch
from torch.utils.data import DataLoader

from lerobot_wds.errors import UsageError
from lerobot_wds.reader import LeRobotShardDataset
from lerobot_wds.reader.episodes import EpisodeError
from lerobot_wds.reader.sample import SampleBuilder
from lerobot_wds.reader.video import MAIN_DECODE_STREAMS, EpisodeVideo
from reader_helpers import assert_sample_equal, corrupt_copy, dav1d_threads, expected, indices_of, pack_fixture

FIXTURES = ["lerobot_v3_av1", "lerobot_v3_images"]


def epoch_by_index(ds):
    return {int(item["index"]): item for item in ds}


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("kind", ["plain", "windows"])
def test_parity_with_lerobot(packed, name, kind):
    js, npz = expected(name, kind)
    ds = LeRobotShardDataset(packed(name), delta_timestamps=js["delta_timestamps"], shuffle=True, seed=3)
    items = epoch_by_index(ds)
    assert sorted(items) == list(range(js["total_frames"]))
    for i in js["indices"]:
        assert_sample_equal(items[i], i, js, npz)


def test_parity_through_dataloader_workers(packed):
    js, npz = expected("lerobot_v3_av1", "windows")
    ds = LeRobotShardDataset(packed("lerobot_v3_av1"), delta_timestamps=js["delta_timestamps"], shuffle=False)
    want = set(js["indices"])
    seen = 0
    for batch in DataLoader(ds, batch_size=None, num_workers=2):
        i = int(batch["index"])
        if i in want:
            assert_sample_equal(batch, i, js, npz)
            seen += 1
    assert seen == len(want)


def test_uint8_frames_are_planar_in_workers_and_in_the_training_process(packed):
    """In DataLoader workers uint8 frames come contiguous (reader/video.py ``planar``: collate then
    copies instead of transposing); lerobot's clips, which the shared decoder takes, come contiguous
    in the training process too (``shared_decoder.PlanarFrame``), with the same values either way.
    (torchcodec's views, in the training process: tests/test_video.py.)"""
    ds = LeRobotShardDataset(packed("lerobot_v3_av1"), return_uint8=True, seed=1)
    cam = "observation.images.top"
    in_workers = [s[cam] for s in DataLoader(ds, batch_size=None, num_workers=2)]
    assert len(in_workers) == 320 and all(f.is_contiguous() for f in in_workers)
    here = {int(s["index"]): s[cam] for s in ds}
    assert all(f.is_contiguous() for f in here.values())
    ordered = sorted((int(s["index"]), s[cam]) for s in DataLoader(ds, batch_size=None, num_workers=2))
    assert all(torch.equal(f, here[i]) for i, f in ordered)


def decode_helpers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("lerobot-wds-decode")]


@pytest.mark.skipif(MAIN_DECODE_STREAMS < 2, reason="one core: one sample decoded at a time everywhere")
def test_training_process_decodes_samples_at_once_on_one_thread_decoders(packed):
    """reader/video.py: in the training process samples of different episodes decode at once on
    helper threads, each decoder one-threaded (dav1d starts no threads of its own); in DataLoader
    workers neither (the workers are the parallelism). The samples are the same either way."""
    ds = LeRobotShardDataset(packed("lerobot_v3_av1"), return_uint8=True, seed=1)
    it = iter(ds)
    first = [next(it) for _ in range(8)]
    helpers = decode_helpers()
    assert len(helpers) == MAIN_DECODE_STREAMS - 1 and dav1d_threads() == 0
    here = first + list(it)
    assert not decode_helpers()  # the epoch ended: its helpers are gone
    in_workers = list(DataLoader(ds, batch_size=4, num_workers=2, collate_fn=dav1d_threads))
    assert len(in_workers) == 80 and set(in_workers) == {0}
    one_at_a_time = {int(s["index"]): s for s in DataLoader(ds, batch_size=None, num_workers=1)}
    assert len(here) == len(one_at_a_time) == len(ds)
    for s in here:
        other = one_at_a_time[int(s["index"])]
        assert s.keys() == other.keys()
        assert all(torch.equal(v, other[k]) if isinstance(v, torch.Tensor) else v == other[k] for k, v in s.items())


IMPORTS_SCRIPT = """
import json, sys
import torch
from torch.utils.data import DataLoader
from lerobot_wds.reader import LeRobotShardDataset

AT_START = None


def imported():
    return ["av" in sys.modules, "torchcodec" in sys.modules]


def note(_):  # worker_init_fn: what was there before this worker decoded anything?
    global AT_START
    AT_START = imported()


def at_start(batch):  # collate_fn, after the worker decoded the batch
    return (*AT_START, *imported(), "torch._dynamo" in sys.modules)


if __name__ == "__main__":
    ds = LeRobotShardDataset(sys.argv[1], return_uint8=True)
    out = {"after_init": imported()}
    for context in ("spawn", "fork"):
        flags = set(DataLoader(ds, batch_size=40, num_workers=1, multiprocessing_context=context,
                               worker_init_fn=note, collate_fn=at_start))
        out[context] = [sorted(flags), imported()]
    decoded = sum(len(b["index"]) for b in DataLoader(ds, batch_size=40))  # in this process
    out["decoded here"] = [decoded == len(ds), *imported(), "torch._dynamo" in sys.modules]
    import torch._dynamo  # the real one, for a torch.compile after decoding
    out["compiles"] = torch.compile(lambda x: x + 1, backend="eager")(torch.ones(2)).tolist()
    print(json.dumps(out))
"""


def test_decoding_processes_import_only_what_decodes(packed, tmp_path):
    """reader/video.py ``import_decoders_before_fork``: making a dataset imports no decoder; forked
    workers find PyAV imported (what decodes lerobot's clips: shared_decoder.py), spawned ones
    import it themselves; torchcodec, which decodes only what the shared path does not take, is
    imported by none of them here, nor is ``torch._dynamo``; ``torch.compile`` works after."""
    script = tmp_path / "imports.py"
    script.write_text(IMPORTS_SCRIPT)
    run = subprocess.run([sys.executable, str(script), packed("lerobot_v3_av1")], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got == {"after_init": [False, False],
                   "spawn": [[[False, False, True, False, False]], [False, False]],
                   "fork": [[[True, False, True, False, False]], [True, False]],
                   "decoded here": [True, True, False, False], "compiles": [2.0, 2.0]}


def collect(path, num_workers, world_size=1, epoch=0, seed=0, **kw):
    """Per rank: the global indices yielded in one epoch through a DataLoader."""
    out = []
    for rank in range(world_size):
        ds = LeRobotShardDataset(path, rank=rank, world_size=world_size, seed=seed, episode_pool_size=2, **kw)
        ds.set_epoch(epoch)
        got = indices_of(DataLoader(ds, batch_size=5, num_workers=num_workers))
        assert len(got) == len(ds)
        out.append(got)
    return out


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("world_size", [1, 2])
def test_exactly_once_equal_ranks_deterministic(packed, num_workers, world_size):
    path = packed("lerobot_v3_images")  # 80 frames in 4 shards
    runs = collect(path, num_workers, world_size)
    lengths = {len(r) for r in runs}
    assert len(lengths) == 1 and lengths.pop() == 80 // world_size  # equal per-rank lengths
    flat = [i for r in runs for i in r]
    assert len(set(flat)) == len(flat) == 80  # exactly once (80 divides evenly)
    assert collect(path, num_workers, world_size) == runs  # determinism per seed
    assert collect(path, num_workers, world_size, epoch=1) != runs  # reshuffle across epochs
    assert collect(path, num_workers, world_size, seed=1) != runs


def test_one_shard_feeds_every_rank_and_worker(tmp_path):
    path = pack_fixture("lerobot_v3_images", tmp_path, shard_size=1 << 30)
    assert LeRobotShardDataset(path).store.read_manifest().shards.__len__() == 1
    runs = collect(path, 2, world_size=2)
    assert [len(r) for r in runs] == [40, 40]
    assert sorted(i for r in runs for i in r) == list(range(80))


def test_uneven_ranks_leave_out_less_than_world_size(packed):
    runs = collect(packed("lerobot_v3_images"), 0, world_size=3)  # 80 = 3*26 + 2
    assert [len(r) for r in runs] == [26, 26, 26]
    assert len(set(i for r in runs for i in r)) == 78


def test_unshuffled_streams_in_order(packed):
    got = indices_of(LeRobotShardDataset(packed("lerobot_v3_images"), shuffle=False))
    assert got == list(range(80))


def test_episode_subset_and_meta(packed):
    ds = LeRobotShardDataset(packed("lerobot_v3_av1"), episodes=[1, 4], shuffle=False)
    assert ds.meta.total_episodes == 2 and ds.meta.total_frames == 170 and len(ds) == 170
    assert sorted({int(x["episode_index"]) for x in ds}) == [1, 4]
    m = ds.meta
    assert m.fps == 30 and m.video_keys == ["observation.images.top", "observation.images.wrist"]
    assert m.camera_keys == m.video_keys and m.tasks["open the top drawer"] == 1
    assert m.stats["action"]["mean"].shape == (6,)
    imgs = LeRobotShardDataset(packed("lerobot_v3_images")).meta
    assert imgs.camera_keys == ["observation.images.front", "observation.images.gripper"]


def test_config_errors(packed):
    path = packed("lerobot_v3_av1")
    with pytest.raises(ValueError, match=r"'actions'.*available: .*action"):
        LeRobotShardDataset(path, delta_timestamps={"actions": [0.0]})
    with pytest.raises(ValueError, match=r"episodes \[99\]"):
        LeRobotShardDataset(path, episodes=[99])
    with pytest.raises(ValueError, match="on_error='ignore'"):
        LeRobotShardDataset(path, on_error="ignore")


def test_image_transforms_apply_to_cameras(packed):
    ds = LeRobotShardDataset(packed("lerobot_v3_images"), image_transforms=lambda t: t * 0 - 1, shuffle=False, episodes=[1])
    item = next(iter(ds))
    assert (item["observation.images.front"] == -1).all() and (item["observation.images.gripper"] == -1).all()
    assert item["observation.state"].abs().sum() > 0


def test_truncated_shard_names_shard_and_episode(packed, tmp_path):
    path = corrupt_copy(packed("lerobot_v3_av1"), tmp_path)
    with pytest.raises(EpisodeError, match=r"shard-000001.tar, episode \d"):
        list(LeRobotShardDataset(path, shuffle=False))


def test_on_error_skip_counts(packed, tmp_path):
    path = corrupt_copy(packed("lerobot_v3_av1"), tmp_path)
    ds = LeRobotShardDataset(path, shuffle=False, on_error="skip")
    got = indices_of(ds)
    assert 0 < len(got) < 320 and ds.skipped == 320 - len(got)
    assert ds.io_stats()["skipped"] == ds.skipped


def test_skip_loses_only_the_episode_cut_off(packed, tmp_path):
    """shard-000001.tar ends inside its last episode: that episode is skipped, no other. The shard's
    episodes are fetched as one request; it fails at the file's end, and each episode is fetched
    again alone, so the ones still whole are read."""
    path = tmp_path / "cut"
    shutil.copytree(packed("lerobot_v3_av1"), path)
    ds = LeRobotShardDataset(path, shuffle=False, on_error="skip")
    shards = ds.store.read_manifest().shards
    shard = next(s for s in shards if s.name == "shard-000001.tar")
    assert len(shard.episodes) >= 2
    tar = path / shard.name
    tar.write_bytes(tar.read_bytes()[: shard.episodes[-1].span[0] + 1000])
    want = sorted(i for s in shards for e in s.episodes if e is not shard.episodes[-1]
                  for i in range(e.dataset_from_index, e.dataset_from_index + e.length))
    got = indices_of(ds)
    assert sorted(got) == want and ds.skipped == 320 - len(want)


def test_each_video_frame_decoded_once_per_epoch(packed):
    # GOP 2, random order: without reuse a frame costs ~1.5 decodes; the frame cache makes it 1.
    ds = LeRobotShardDataset(packed("lerobot_v3_av1"), seed=5)
    assert len(indices_of(ds)) == 320
    assert ds.io_stats()["frames_decoded"] == 2 * 320


def test_return_uint8_gives_the_same_frames_as_uint8(packed):
    """lerobot's ``return_uint8``: video cameras as uint8, everything else as before (image-dtype
    cameras too: lerobot's flag leaves them float32); ``u8 / 255`` in float32 is bit for bit the
    float sample."""
    for name in FIXTURES:
        js, npz = expected(name, "windows")
        ds = LeRobotShardDataset(packed(name), delta_timestamps=js["delta_timestamps"], return_uint8=True)
        videos = set(ds.meta.video_keys)
        items = epoch_by_index(ds)
        for i in js["indices"][::4]:
            item = items[i]
            cameras = [k for k in item if k.startswith("observation.images.") and not k.endswith("_is_pad")]
            assert videos and set(cameras) >= videos, name
            for key in cameras:
                want = torch.uint8 if key in videos else torch.float32
                assert item[key].dtype == want, f"{name} {key}: {item[key].dtype}"
                if key in videos:
                    item[key] = (item[key] / 255.0).to(torch.float32)
            assert_sample_equal(item, i, js, npz)


def test_set_epoch_reaches_persistent_workers(packed):
    path = packed("lerobot_v3_images")
    ds = LeRobotShardDataset(path, seed=0, episode_pool_size=2)
    loader = DataLoader(ds, batch_size=5, num_workers=2, persistent_workers=True)
    got = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        got.append(indices_of(loader))
    assert got == [collect(path, 2, epoch=e)[0] for e in range(3)]  # what fresh workers give
    assert len({tuple(g) for g in got}) == 3


@pytest.mark.parametrize("k", [1, 5])
def test_persistent_stateful_loader_resumes_mid_epoch(packed, k):
    from torchdata.stateful_dataloader import StatefulDataLoader

    path = packed("lerobot_v3_images")

    def make(epoch, persistent=True):
        ds = LeRobotShardDataset(path, seed=7, episode_pool_size=2)
        ds.set_epoch(epoch)
        return ds, StatefulDataLoader(ds, batch_size=4, num_workers=2, persistent_workers=persistent)

    fresh = [indices_of(make(e, persistent=False)[1]) for e in (1, 2)]

    ds, loader = make(0)
    indices_of(loader)  # epoch 0 runs on the workers that epoch 1 reuses
    ds.set_epoch(1)
    it = iter(loader)
    head = indices_of(next(it) for _ in range(k))  # k=1: worker 1 has delivered nothing of epoch 1
    state = loader.state_dict()
    del it
    ds2, resumed = make(1)
    resumed.load_state_dict(state)
    assert head + indices_of(resumed) == fresh[0]
    ds2.set_epoch(2)  # the resumed loader's persistent workers then run epoch 2 from its start
    assert indices_of(resumed) == fresh[1]


@pytest.mark.skipif(MAIN_DECODE_STREAMS < 2, reason="one core: one decode thread")
def test_single_samples_decode_ahead_on_both_threads_in_the_same_order(packed, monkeypatch):
    """reader/dataset.py ``_build_ahead``: at 0 workers the helper decodes later draws while this
    thread decodes the first unless the helper took it, so both threads decode frames; the samples,
    windows included, and their order are those of one worker decoding one sample at a time."""
    js, _ = expected("lerobot_v3_av1", "windows")
    args = dict(delta_timestamps=js["delta_timestamps"], return_uint8=True, seed=4)
    one_at_a_time = list(DataLoader(LeRobotShardDataset(packed("lerobot_v3_av1"), **args), batch_size=None,
                                    num_workers=1))
    threads = set()
    decode = EpisodeVideo._frame
    build = SampleBuilder.build

    def spy_decode(self, *a, **k):  # a frame decoded, on this thread
        threads.add(threading.current_thread().name.split("_")[0])
        return decode(self, *a, **k)

    def spy_build(self, *a, **k):
        threads.add(("build", threading.current_thread().name))
        return build(self, *a, **k)

    monkeypatch.setattr(EpisodeVideo, "_frame", spy_decode)
    monkeypatch.setattr(SampleBuilder, "build", spy_build)
    here = list(LeRobotShardDataset(packed("lerobot_v3_av1"), **args))
    assert threads == {"MainThread", "lerobot-wds-decode", ("build", "MainThread")}
    assert [int(s["index"]) for s in here] == [int(s["index"]) for s in one_at_a_time]
    for s, other in zip(here, one_at_a_time):
        assert s.keys() == other.keys()
        assert all(torch.equal(v, other[k]) if isinstance(v, torch.Tensor) else v == other[k] for k, v in s.items())


@pytest.mark.skipif(MAIN_DECODE_STREAMS < 2, reason="one core: one decode thread")
def test_an_error_on_a_decode_helper_reaches_the_caller(packed, monkeypatch):
    """An error other than a damaged episode's, raised while a helper thread decodes ahead, is
    raised by the iteration at that sample, not lost with the thread."""
    decode = EpisodeVideo.decode

    def failing_on_helpers(self, *a, **k):
        if threading.current_thread().name.startswith("lerobot-wds-decode"):
            raise RuntimeError("out of something on a helper")
        return decode(self, *a, **k)

    monkeypatch.setattr(EpisodeVideo, "decode", failing_on_helpers)
    with pytest.raises(RuntimeError, match="out of something on a helper"):
        list(LeRobotShardDataset(packed("lerobot_v3_av1"), return_uint8=True, seed=4))


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_decode_device_that_cannot_decode_is_a_usage_error_not_damaged_episodes(packed, on_error):
    """``video_decode_device="cuda"`` where torchcodec cannot decode on it (no GPU here, or its
    CPU-only build, as in a lerobot 0.6.1 environment): no clip opens there. That is the option's
    fault, not the episodes': raised with ``on_error="skip"`` too, instead of every episode skipped
    as damaged and an empty epoch."""
    if torch.cuda.is_available():
        pytest.skip("torch sees a GPU here")
    ds = LeRobotShardDataset(packed("lerobot_v3_av1"), video_decode_device="cuda", on_error=on_error, shuffle=False)
    with pytest.raises(UsageError, match=r"video_decode_device='cuda': torchcodec cannot decode there .* camera "
                                         r"'observation\.images\.\w+' of shard-\d+\.tar, episode 0 on the CPU"):
        next(iter(ds))
    assert ds.skipped == 0
