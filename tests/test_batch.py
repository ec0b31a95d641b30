"""reader/batch.py through the dataset: ``batch_size=N`` batches against the DataLoader's own
batches of the same samples, on the real packed fixtures, in the training process and in workers."""

import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from lerobot_wds.errors import UsageError
from lerobot_wds.reader import LeRobotShardDataset, LeRobotTransitions, mix
from lerobot_wds.reader.batch import BatchSlots
from lerobot_wds.reader.build_threads import BuildThreads
from lerobot_wds.reader.io_stats import Stats
from lerobot_wds.reader.one_ahead import THREAD_NAME
from lerobot_wds.reader.video import MAIN_DECODE_STREAMS, EpisodeVideo
from reader_helpers import assert_resumes, corrupt_copy, expected, indices_of


def assert_batches_equal(want: list[dict], got: list[dict]) -> None:
    """Same batches, same keys in the same order, same dtypes, shapes and bits."""
    assert [len(b["index"]) for b in got] == [len(b["index"]) for b in want]
    for n, (w, g) in enumerate(zip(want, got)):
        assert list(g) == list(w), f"batch {n}: keys {list(g)} != {list(w)}"
        for key, value in w.items():
            if isinstance(value, torch.Tensor):
                assert g[key].dtype == value.dtype and g[key].shape == value.shape, f"batch {n}, {key}"
                assert torch.equal(g[key], value), f"batch {n}, {key}: values differ"
            else:
                assert g[key] == value, f"batch {n}, {key}"


@pytest.mark.parametrize("name", ["lerobot_v3_av1", "lerobot_v3_images"])
@pytest.mark.parametrize("kind", ["plain", "windows"])
@pytest.mark.parametrize("uint8", [True, False])
def test_batches_equal_the_dataloaders_batches_of_the_same_samples(packed, name, kind, uint8):
    js, _ = expected(name, kind)
    args = dict(delta_timestamps=js["delta_timestamps"], return_uint8=uint8, seed=4)
    want = list(DataLoader(LeRobotShardDataset(packed(name), **args), batch_size=7))
    got = list(LeRobotShardDataset(packed(name), batch_size=7, **args))
    assert len(got[-1]["index"]) < 7  # the last batch of the epoch is short, as the DataLoader's
    assert_batches_equal(want, got)


@pytest.mark.parametrize("kind", ["plain", "windows"])
def test_batches_from_workers_come_in_shared_memory(packed, kind):
    js, _ = expected("lerobot_v3_av1", kind)
    args = dict(delta_timestamps=js["delta_timestamps"], return_uint8=True, seed=2)
    path = packed("lerobot_v3_av1")
    want = list(DataLoader(LeRobotShardDataset(path, **args), batch_size=16, num_workers=2))
    got = list(DataLoader(LeRobotShardDataset(path, batch_size=16, **args), batch_size=None, num_workers=2))
    assert_batches_equal(want, got)
    assert sorted(indices_of(got)) == list(range(320))
    cameras = ["observation.images.top", "observation.images.wrist"]
    for n, batch in enumerate(got):  # one block for the cameras, one for the other tensors: 2 descriptors
        blocks = {k: v.untyped_storage().data_ptr() for k, v in batch.items() if isinstance(v, torch.Tensor)}
        assert all(batch[k].is_shared() for k in blocks), f"batch {n}"
        assert len({blocks[k] for k in cameras}) == 1, f"batch {n}: cameras in {len({blocks[k] for k in cameras})} blocks"
        assert len({p for k, p in blocks.items() if k not in cameras}) == 1, f"batch {n}: {blocks}"


def test_small_keys_are_collated_into_one_shared_block_equal_to_default_collate():
    from torch.utils.data import default_collate

    from lerobot_wds.reader.batch import collate_in_one_block

    samples = [{"index": torch.tensor(i), "pad": torch.arange(5) > i, "action": torch.rand(16, 3),
                "task": f"task {i}", "reward": 0.5 * i, "frame": torch.arange(3, dtype=torch.int16) + i}
               for i in range(7)]
    got, want = collate_in_one_block(samples), default_collate(samples)
    assert_batches_equal([want], [got])
    tensors = [k for k in ("index", "pad", "action", "frame")]
    assert len({got[k].untyped_storage().data_ptr() for k in tensors}) == 1
    assert all(got[k].is_shared() and got[k].is_contiguous() and got[k].data_ptr() % 64 == 0 for k in tensors)
    assert not got["reward"].is_shared()  # a number: default_collate's own tensor
    assert_batches_equal([default_collate(samples[:1])], [collate_in_one_block(samples[:1])])
    empty = [{"none": torch.zeros(0)} for _ in range(3)]
    assert collate_in_one_block(empty)["none"].shape == default_collate(empty)["none"].shape == (3, 0)
    ragged = [{"action": torch.zeros(2)}, {"action": torch.zeros(3)}]
    with pytest.raises(RuntimeError, match="equal size"):  # not stacked here: default_collate's own error
        collate_in_one_block(ragged)


def test_numbers_of_samples_built_into_a_batch_are_collated_as_their_0d_tensors():
    """A sample built into a batch gives its numbers as Scalar (reader/sample.py); each key's become
    one tensor, equal to default_collate of the 0-d tensors they stand for, in the training process
    and in one shared block in a worker; a key whose values are not all Scalar of one dtype goes
    through default_collate as those tensors."""
    from torch.utils.data import default_collate

    from lerobot_wds.reader.batch import Scalar, collate, collate_in_one_block

    f32 = torch.tensor([0.1, 1e-8, float("nan"), -3.75, 16777217.0]).tolist()  # float32 values as Python floats
    samples = [{"timestamp": Scalar(f32[i], torch.float32), "index": Scalar(2**40 + i, torch.int64),
                "done": Scalar(i == 3, torch.bool), "ratio": Scalar(i / 3, torch.float64),
                "mixed": Scalar(i, torch.int64 if i else torch.float32),  # not one dtype
                "cam": torch.full((2,), i), "action": torch.rand(4, 2)} for i in range(5)]
    as_tensors = [{k: torch.scalar_tensor(v.value, dtype=v.dtype) if isinstance(v, Scalar) else v
                   for k, v in s.items()} for s in samples]
    want = default_collate(as_tensors)
    del want["cam"]
    got = collate(samples, skip={"cam"})
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and torch.equal(got[k].nan_to_num(7), want[k].nan_to_num(7)), k
    shared = collate_in_one_block(samples, skip={"cam"})
    assert list(shared) == list(want)
    for k in want:
        assert shared[k].dtype == want[k].dtype and torch.equal(shared[k].nan_to_num(7), want[k].nan_to_num(7)), k
    blocks = {k: shared[k].untyped_storage().data_ptr() for k in ("timestamp", "index", "done", "action")}
    assert len(set(blocks.values())) == 1 and shared["timestamp"].is_shared()
    assert not shared["mixed"].is_shared()  # not one dtype: default_collate's own


def test_the_training_process_reuses_a_batchs_memory_once_nothing_holds_it(packed):
    path, top = packed("lerobot_v3_av1"), "observation.images.top"
    want = [b[top] for b in DataLoader(LeRobotShardDataset(path, return_uint8=True, seed=3), batch_size=8)]
    kept, memory = [], []
    for n, batch in enumerate(LeRobotShardDataset(path, return_uint8=True, seed=3, batch_size=8)):
        frames = batch[top]
        assert torch.equal(frames, want[n]), f"batch {n}"
        memory.append(frames.untyped_storage().data_ptr())
        if n % 3 == 0:
            kept.append((n, frames[1].numpy()))  # a numpy view of one row, kept: that batch is never reused
        del batch, frames
    assert len(set(memory)) < len(memory) / 2  # the others are
    for n, row in kept:
        assert np.array_equal(row, want[n][1].numpy()), f"batch {n} was overwritten while a view of it was held"


@pytest.mark.parametrize("strategy", ["file_descriptor", "file_system"])
def test_workers_reuse_a_batchs_memory_once_the_training_process_lets_go_of_it(packed, strategy):
    js, _ = expected("lerobot_v3_av1", "windows")
    path, top = packed("lerobot_v3_av1"), "observation.images.top"
    args = dict(delta_timestamps=js["delta_timestamps"], return_uint8=True, seed=3)
    want = [b[top] for b in DataLoader(LeRobotShardDataset(path, **args), batch_size=8, num_workers=2)]
    ds = LeRobotShardDataset(path, batch_size=8, **args)
    before = torch.multiprocessing.get_sharing_strategy()
    torch.multiprocessing.set_sharing_strategy(strategy)
    kept = []
    try:
        for n, batch in enumerate(DataLoader(ds, batch_size=None, num_workers=2)):
            frames = batch[top]
            assert torch.equal(frames, want[n]), f"batch {n}"
            if n % 8 == 0:
                kept.append((n, frames[1].numpy()))  # a numpy view of one row: that batch is never reused
            elif n % 8 == 3:
                kept.append((n, batch))  # the batch itself
            del batch, frames
            time.sleep(0.02)  # a training step, during which the released batches are reported
    finally:
        torch.multiprocessing.set_sharing_strategy(before)
    new = ds.io_stats()["batches_in_new_memory"]
    for n, held in kept:
        got = held[top] if isinstance(held, dict) else held
        want_n = want[n] if isinstance(held, dict) else want[n][1].numpy()
        assert np.array_equal(got, want_n), f"batch {n} was overwritten while the training process held it"
    assert len(want) == 40 and len(kept) <= new < 30  # the others reused released memory


def test_image_transforms_and_renames_apply_to_batches(packed):
    def flip(frames: torch.Tensor) -> torch.Tensor:
        return frames.flip(-1)[..., :40]  # changes the shape: the frames cannot be written in place

    path = packed("lerobot_v3_av1")
    args = dict(image_transforms=flip, rename={"observation.images.top": "observation.images.front"}, seed=1)
    want = list(DataLoader(LeRobotShardDataset(path, **args), batch_size=32))
    got = list(LeRobotShardDataset(path, batch_size=32, **args))
    assert got[0]["observation.images.front"].shape[-1] == 40
    assert_batches_equal(want, got)


@pytest.mark.parametrize("shuffle", [False, True])
def test_skipped_samples_leave_no_gap(packed, tmp_path, shuffle):
    path = corrupt_copy(packed("lerobot_v3_av1"), tmp_path)
    want = list(DataLoader(LeRobotShardDataset(path, shuffle=shuffle, on_error="skip"), batch_size=32))
    ds = LeRobotShardDataset(path, shuffle=shuffle, on_error="skip", batch_size=32)
    got = list(ds)
    assert 0 < ds.skipped < 320
    assert_batches_equal(want, got)


def test_rows_of_skipped_samples_are_closed_up():
    slots = BatchSlots(4, {"cam": (2, 3)}, torch.uint8, None, {}, Stats())
    first = {"cam": slots.rows(1)[0]["cam"].fill_(9)}  # row 0: a sample handed over earlier
    slots.close_gaps([first])
    slots._items.append(first)
    rows = slots.rows(3)
    built = []
    for n, row in enumerate(rows):
        row["cam"].fill_(n + 1)
        built.append(None if n == 1 else {"cam": row["cam"]})
    slots.close_gaps(built)
    frames = slots._sets[0]["cam"]
    assert [int(frames[r, 0, 0]) for r in range(3)] == [9, 1, 3]
    assert built[2]["cam"].data_ptr() == frames[2].data_ptr()  # the sample now holds its new row
    with pytest.raises(ValueError, match="3 left"):
        slots.rows(4)


def test_rows_given_out_ahead_are_the_next_batchs():
    """Rows asked for before the samples of the rows given earlier are handed over: those past a full
    batch are the next batch's, and each batch comes out with its own samples' frames."""
    slots = BatchSlots(2, {"cam": (1,)}, torch.uint8, None, {}, Stats())
    rows = slots.rows(2) + slots.rows(1)
    for n, row in enumerate(rows):
        row["cam"].fill_(n)
    assert rows[2]["cam"].untyped_storage().data_ptr() != rows[0]["cam"].untyped_storage().data_ptr()
    samples = [{"cam": row["cam"]} for row in rows]
    slots.close_gaps(samples[:2])
    slots.close_gaps(samples[2:])
    assert [b["cam"].flatten().tolist() for b in slots.batches(samples)] == [[0, 1], [2]]
    ahead = BatchSlots(2, {"cam": (1,)}, torch.uint8, None, {}, Stats())
    first = ahead.rows(2)
    ahead.rows(2)
    with pytest.raises(ValueError, match="skipped in rows given out before later ones"):
        ahead.close_gaps([None, {"cam": first[1]["cam"]}])


@pytest.mark.skipif(MAIN_DECODE_STREAMS < 2, reason="one core: one decode thread")
def test_the_training_process_builds_a_batchs_rows_on_every_decode_thread(packed, monkeypatch):
    """reader/dataset.py: at 0 workers a batch's samples are decoded and written into their rows on
    the builder thread (reader/one_ahead.py) and the helpers at once (each episode on one thread),
    and the batches are still the DataLoader's batches of the same samples."""
    js, _ = expected("lerobot_v3_av1", "windows")
    args = dict(delta_timestamps=js["delta_timestamps"], return_uint8=True, seed=5)
    threads = set()
    frames_into = EpisodeVideo.frames_into

    def spy(self, *a, **k):
        threads.add(threading.current_thread().name.split("_")[0])
        return frames_into(self, *a, **k)

    want = list(DataLoader(LeRobotShardDataset(packed("lerobot_v3_av1"), **args), batch_size=16))
    monkeypatch.setattr(EpisodeVideo, "frames_into", spy)
    got = list(LeRobotShardDataset(packed("lerobot_v3_av1"), batch_size=16, **args))
    assert threads == {THREAD_NAME, "lerobot-wds-decode"}
    assert_batches_equal(want, got)


@pytest.mark.skipif(MAIN_DECODE_STREAMS < 2, reason="one core: one decode thread")
@pytest.mark.parametrize("on_error, ahead", [("raise", 1), ("skip", 0)])
def test_the_next_batchs_draws_are_queued_before_this_batch_is_collected(packed, monkeypatch, on_error, ahead):
    """reader/dataset.py: at 0 workers the next batch's draws are queued for the helpers before this
    thread collects this batch (reader/build_threads.py), so they go on building while it hands the
    batch over; not with ``on_error="skip"``, where a skipped sample moves the rows after it. The
    batches are the DataLoader's either way."""
    js, _ = expected("lerobot_v3_av1", "windows")
    args = dict(delta_timestamps=js["delta_timestamps"], return_uint8=True, seed=6, on_error=on_error)
    submitted, queued_after = [], []
    submit, finish = BuildThreads.submit, BuildThreads.finish

    def spy_submit(self, groups):
        submitted.append(submit(self, groups))
        return submitted[-1]

    def spy_finish(self, run):  # runs queued after the one collected now
        queued_after.append(len(submitted) - 1 - submitted.index(run))
        return finish(self, run)

    want = list(DataLoader(LeRobotShardDataset(packed("lerobot_v3_av1"), **args), batch_size=16))
    monkeypatch.setattr(BuildThreads, "submit", spy_submit)
    monkeypatch.setattr(BuildThreads, "finish", spy_finish)
    got = list(LeRobotShardDataset(packed("lerobot_v3_av1"), batch_size=16, **args))
    assert queued_after == [ahead] * (len(got) - 1) + [0]
    assert_batches_equal(want, got)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_between_batches_is_exact(packed, num_workers):
    path = packed("lerobot_v3_av1")

    def make():
        ds = LeRobotShardDataset(path, seed=9, return_uint8=True, batch_size=10)
        return ds if num_workers == 0 else StatefulDataLoader(ds, batch_size=None, num_workers=num_workers)

    for k in (1, 5):
        assert_resumes(make, k)


def test_mixtures_and_transitions_take_single_samples(packed):
    path = packed("lerobot_v3_av1")
    with pytest.raises(ValueError, match=r"mix: datasets \[1\] yield batches"):
        mix([LeRobotShardDataset(path), LeRobotShardDataset(path, batch_size=8)], [1, 1])
    with pytest.raises(ValueError, match="yields single transitions"):
        LeRobotTransitions(path, batch_size=8)
    with pytest.raises(ValueError, match="batch_size=0 must be >= 1"):
        LeRobotShardDataset(path, batch_size=0)


def test_the_release_watcher_has_ended_before_python_finalizes(tmp_path):
    """reader/shm_ring.py: the training process's watcher thread is ended at exit, before Python
    finalizes (a daemon thread killed inside torch's C++ aborts the process), even with batches
    still watched."""
    script = tmp_path / "exit.py"
    script.write_text(textwrap.dedent("""
        import atexit, threading
        atexit.register(lambda: print("watcher alive at finalization:",
                                      any(t.name == "lerobot-wds-shm-ring" for t in threading.enumerate())))
        import torch
        from lerobot_wds.reader import shm_ring
        released = torch.full((4,), -1, dtype=torch.int64).share_memory_()
        kept = [shm_ring.arrived({"x": torch.empty(8)}, "token", slot, slot + 1, released, ["x"]) for slot in range(4)]
        print("watcher alive while batches are held:", shm_ring._WATCHER.is_alive())
    """))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split("\n")[:2] == ["watcher alive while batches are held: True",
                                          "watcher alive at finalization: False"]


def test_a_batch_that_cannot_be_allocated_says_how_large_and_what_to_lower(packed):
    """10**9 rows of the fixture's cameras (terabytes): torch cannot allocate them, and the error
    says the size, the cameras' shapes and what to lower, instead of torch's allocator message alone."""
    ds = LeRobotShardDataset(packed("lerobot_v3_av1"), batch_size=10**9, return_uint8=True)
    with pytest.raises(UsageError, match=r"cannot allocate a batch's camera frames, [\d.]+ GiB for "
                                         r"observation\.images\.top \(1000000000, 3, \d+, \d+\).*lower batch_size"):
        next(iter(ds))
