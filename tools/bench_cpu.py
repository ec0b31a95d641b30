"""Where the CPU goes when ours streams a packed dataset: per process, per sample, and collate's share.

One DataLoader over ours (batch 32, ``return_uint8=True``; with workers: spawn, prefetch 4,
persistent), as ``tools/bench_peers.py`` measures it. After a warm-up it reads each process's CPU
seconds (utime + stime from /proc) before and after ``--seconds`` of batches and prints, per
sample yielded, the CPU of the training process and of each worker, and the share of wall time
the training process spent in ``default_collate`` (at 0 workers only: with workers, collate runs
in them); and how much of each process's CPU was in the kernel and how many minor page faults
(fresh pages faulted in) it took per sample. A machine whose cores are all busy has
samples/s x CPU per sample = cores.

``--batched``: the dataset builds the batches (``batch_size=32``, DataLoader ``batch_size=None``).

``--split`` (0 workers): the training process's CPU per sample split into the shared decoder's
decoding turns (``SharedClipDecoder._turn``), the conversions into RGB (``PlanarFrame.convert_into``,
with how many a sample makes) and the rest, each timed on its own thread's CPU clock; with
``--batched`` also how many cores were busy while the builder thread waited for a batch's
samples, building them itself and on the helpers (``_collect_rows``: process CPU / wall), and
the wall time per batch outside it. Since batches are built one ahead (``reader/one_ahead.py``)
the loop runs during builds, and the time outside them is the builder's own: waiting to be asked
for the next batch, assembling it, the next draws (while the helpers go on with them).

    .venv-lerobot/bin/python tools/bench_cpu.py bench_out/peers/packed --workers 2 [--windows] [--batched]
    .venv-lerobot/bin/python tools/bench_cpu.py bench_out/peers/packed --workers 0 --batched --windows --split
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from bench_peers import loader_options, windows  # noqa: E402


def proc_stat(pid: int) -> tuple[float, float, int]:
    """(utime, stime) of a process in seconds, and its minor page faults so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick, int(fields[7])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    user, system, _ = proc_stat(pid)
    return user + system


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("packed", help="a packed dataset (lerobot-wds pack output)")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--windows", action="store_true", help="a 16-step action window and the top camera at [-0.1, 0]")
    ap.add_argument("--batched", action="store_true", help="batch_size=32 in the dataset")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup-batches", type=int, default=40)
    ap.add_argument("--split", action="store_true", help="at 0 workers: decoding, conversions and the rest")
    a = ap.parse_args(argv)
    if a.split and a.workers:
        ap.error("--split times the training process's own threads: use it with --workers 0")

    from torch.utils.data import DataLoader, default_collate

    from lerobot_wds.reader import LeRobotShardDataset

    collate_s = [0.0]

    def timed_collate(batch):
        t = time.perf_counter()
        out = default_collate(batch)
        collate_s[0] += time.perf_counter() - t
        return out

    split = timed_internals() if a.split else None
    ds = LeRobotShardDataset(a.packed, delta_timestamps=windows() if a.windows else None, return_uint8=True, seed=0,
                             batch_size=32 if a.batched else None)
    if a.batched:
        loader = DataLoader(ds, batch_size=None, num_workers=a.workers, **loader_options(a.workers))
    else:
        collate = default_collate if a.workers else timed_collate  # in workers collate runs there
        loader = DataLoader(ds, batch_size=32, num_workers=a.workers, collate_fn=collate, **loader_options(a.workers))
    it = iter(loader)
    for _ in range(a.warmup_batches):
        next(it)
    me = os.getpid()
    pids = [me] + [p for p in children(me) if cpu_seconds(p) > 0.5]  # workers, not the resource tracker
    before = {p: proc_stat(p) for p in pids}
    if split is not None:
        split.clear()
    collate_s[0], n, t = 0.0, 0, time.perf_counter()
    while time.perf_counter() - t < a.seconds:
        try:
            n += len(next(it)["index"])
        except StopIteration:  # the epoch ended: the next one (persistent workers stay)
            it = iter(loader)
    wall = time.perf_counter() - t
    after = {p: proc_stat(p) for p in pids}
    used = {p: (sum(after[p][:2]) - sum(before[p][:2])) / n * 1e3 for p in pids}
    system = {p: (after[p][1] - before[p][1]) / n * 1e3 for p in pids}
    faults = {p: (after[p][2] - before[p][2]) / n for p in pids}
    del it
    print(f"ours{' batched' if a.batched else ''}, {a.workers} workers, windows {a.windows}: "
          f"{n / wall:.0f} samples/s over {wall:.1f} s")
    print(f"  CPU per sample: training process {used[me]:.3f} ms"
          + "".join(f", worker {k} {used[p]:.3f} ms" for k, p in enumerate(pids[1:]))
          + f"; all {sum(used.values()):.3f} ms (x samples/s = {sum(used.values()) * n / wall / 1e3:.2f} cores busy)")
    names = ["training process"] + [f"worker {k}" for k in range(len(pids) - 1)]
    print("  of it in the kernel, and minor page faults (fresh pages) per sample: "
          + ", ".join(f"{name} {system[p]:.3f} ms / {faults[p]:.0f}" for name, p in zip(names, pids)))
    if not a.workers and not a.batched:
        print(f"  collate in the training process: {collate_s[0] / wall:.0%} of wall time")
    if split is not None:
        decode, convert = split["decode"] / n * 1e3, split["convert"] / n * 1e3
        print(f"  training process per sample: decoding {decode:.3f} ms, {split['converts'] / n:.1f} conversions "
              f"{convert:.3f} ms, the rest {used[me] - decode - convert:.3f} ms")
        if split["builds"]:
            print(f"  while batches were built: {split['build_cpu'] / split['build_wall']:.2f} cores busy; "
                  f"between builds {(wall - split['build_wall']) / split['builds'] * 1e3:.2f} ms a batch, "
                  f"{split['builds']} batches")
    return 0


def timed_internals() -> dict[str, float]:
    """Wrap the reader's decoding turns and conversions (and batch builds) with timers; the
    returned dict sums them from the next ``clear()`` on."""
    import threading
    from collections import Counter

    from lerobot_wds.reader import shared_decoder
    from lerobot_wds.reader.dataset import LeRobotShardDataset

    acc: Counter = Counter()
    lock = threading.Lock()

    def on_thread_clock(cls, name: str, total: str, count: str) -> None:
        f = getattr(cls, name)

        def timed(*args, **kwargs):
            t = time.thread_time()
            try:
                return f(*args, **kwargs)
            finally:
                with lock:
                    acc[total] += time.thread_time() - t
                    acc[count] += 1
        setattr(cls, name, timed)

    on_thread_clock(shared_decoder.SharedClipDecoder, "_turn", "decode", "turns")
    on_thread_clock(shared_decoder.PlanarFrame, "convert_into", "convert", "converts")
    build = LeRobotShardDataset._collect_rows

    def timed_build(*args, **kwargs):
        t, c = time.perf_counter(), time.process_time()
        try:
            return build(*args, **kwargs)
        finally:
            acc["build_wall"] += time.perf_counter() - t
            acc["build_cpu"] += time.process_time() - c
            acc["builds"] += 1
    LeRobotShardDataset._collect_rows = timed_build
    return acc


if __name__ == "__main__":
    raise SystemExit(main())
