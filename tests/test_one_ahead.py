"""reader/one_ahead.py through the dataset: at ``num_workers=0`` the next batch is built on a thread
of the dataset's own while the loop has the current one, one ahead and no more; the batches, the
resume state and the errors are those of building on the loop's thread."""

import subprocess
import sys
import textwrap
import threading
import time

import pytest
from torch.utils.data import DataLoader

from lerobot_wds.reader import LeRobotShardDataset
from lerobot_wds.reader.batch import BatchSlots
from lerobot_wds.reader.build_threads import THREAD_NAME as HELPER_THREAD_NAME
from lerobot_wds.reader.episodes import EpisodeError
from lerobot_wds.reader.one_ahead import THREAD_NAME, one_ahead
from lerobot_wds.reader.video import MAIN_DECODE_STREAMS
from reader_helpers import assert_resumes, corrupt_copy, indices_of
from test_batch import assert_batches_equal

B = 8


def builders() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def decode_helpers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(HELPER_THREAD_NAME)]


def wait_for(condition, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


@pytest.fixture
def assembled(monkeypatch):
    """The batches assembled so far, and the thread each was assembled on."""
    done: list[str] = []
    assemble = BatchSlots._assemble

    def spy(self):
        batch = assemble(self)
        done.append(threading.current_thread().name)
        return batch

    monkeypatch.setattr(BatchSlots, "_assemble", spy)
    return done


def test_the_next_batch_is_built_while_the_loop_has_this_one(packed, assembled):
    path = packed("lerobot_v3_av1")
    want = list(DataLoader(LeRobotShardDataset(path, return_uint8=True, seed=4), batch_size=B))
    ds = LeRobotShardDataset(path, return_uint8=True, seed=4, batch_size=B)
    it = iter(ds)
    got = [next(it)]
    wait_for(lambda: len(assembled) == 2)  # batch 1, built without being asked for
    time.sleep(0.3)
    assert len(assembled) == 2, "built more than one batch ahead"
    assert ds.state_dict()["yielded"] == B, "the resume state counts a batch the loop has not had"
    got.append(next(it))
    wait_for(lambda: len(assembled) == 3)
    assert ds.state_dict()["yielded"] == 2 * B
    got += list(it)
    assert set(assembled) == {THREAD_NAME}
    assert_batches_equal(want, got)
    assert ds.state_dict()["yielded"] == sum(len(b["index"]) for b in want)
    assert not builders()


@pytest.mark.parametrize("k", [1, 3])
def test_resume_from_a_state_taken_while_a_batch_is_built_ahead_is_exact(packed, assembled, k):
    path = packed("lerobot_v3_av1")

    def make():
        assembled.clear()
        return LeRobotShardDataset(path, seed=9, return_uint8=True, batch_size=B)

    full = indices_of(make())
    ds = make()
    it = iter(ds)
    first = [next(it) for _ in range(k)]
    wait_for(lambda: len(assembled) == k + 1)
    state = ds.state_dict()
    it.close()
    again = make()
    again.load_state_dict(state)
    assert indices_of(first) + indices_of(again) == full
    assert_resumes(make, k)


def test_an_error_while_building_ahead_is_raised_by_the_call_for_that_batch(packed, tmp_path):
    """A batch that cannot be built (a truncated shard, ``on_error="raise"``): the batches before it
    are handed out, and the error comes with the call for it, as when built on the loop's thread."""
    path = corrupt_copy(packed("lerobot_v3_av1"), tmp_path)
    samples = []
    with pytest.raises(EpisodeError, match="shard-000001.tar"):
        for sample in LeRobotShardDataset(path, shuffle=False):
            samples.append(sample)
    got = []
    with pytest.raises(EpisodeError, match="shard-000001.tar"):
        for batch in LeRobotShardDataset(path, shuffle=False, batch_size=B):
            got.append(batch)
    assert len(got) == len(samples) // B > 0
    assert indices_of(got) == indices_of(samples[:len(got) * B])
    wait_for(lambda: not builders())


def test_closing_early_ends_the_builder_and_its_helpers(packed):
    """Closed mid-epoch, with the next batches being built (and queued for the decoding helpers,
    reader/build_threads.py): the builder and the helpers are gone once ``close`` returns."""
    it = iter(LeRobotShardDataset(packed("lerobot_v3_av1"), batch_size=B))
    next(it)
    assert builders() and len(decode_helpers()) == MAIN_DECODE_STREAMS - 1
    it.close()
    assert not builders() and not decode_helpers()


def test_workers_and_single_samples_build_on_the_loops_request(packed, assembled):
    path = packed("lerobot_v3_av1")
    it = iter(LeRobotShardDataset(path))
    next(it)
    assert not builders()
    it.close()
    loader = DataLoader(LeRobotShardDataset(path, batch_size=B), batch_size=None, num_workers=1)
    assert len(list(loader)) > 1
    assert assembled == [] and not builders()  # assembled in the worker, on its own thread


def test_a_builder_left_running_has_ended_before_python_finalizes(packed, tmp_path):
    """An iteration never closed (the loop stopped, its iterator still referenced at exit): the
    builder thread is ended at exit, before Python finalizes (a daemon thread killed inside torch's
    or FFmpeg's code aborts the process)."""
    script = tmp_path / "exit.py"
    script.write_text(textwrap.dedent(f"""
        import atexit, threading, time
        atexit.register(lambda: print("builder alive at finalization:",
                                      any(t.name == "{THREAD_NAME}" for t in threading.enumerate())))
        from lerobot_wds.reader import LeRobotShardDataset
        it = iter(LeRobotShardDataset({str(packed("lerobot_v3_av1"))!r}, batch_size={B}))
        next(it)
        time.sleep(1.0)  # the next batch built: the builder waits to be asked for another
        print("builder alive while iterating:", any(t.name == "{THREAD_NAME}" for t in threading.enumerate()))
    """))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split("\n")[:2] == ["builder alive while iterating: True",
                                          "builder alive at finalization: False"]


def test_an_iteration_finalized_on_its_builder_thread_stops_the_builder(monkeypatch):
    """The last reference to an iteration can go while its builder is inside a build (here the
    build itself drops it; the garbage collector may do so on any thread): the builder is told to
    stop there, and neither joins itself nor closes the generator it is running."""
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    holder, handed = [], threading.Event()

    def items():
        yield 1
        handed.wait(30)
        holder.clear()  # the iteration's last reference: finalized here, on the builder thread
        yield 2

    holder.append(one_ahead(items(), lambda: 0, lambda n: None))
    assert next(holder[0]) == 1
    handed.set()
    wait_for(lambda: not builders())
    assert not holder and [u.exc_value for u in unraisable] == []
