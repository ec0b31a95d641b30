"""What an epoch's start costs the batched reader at 0 workers: each batch's wall time, epoch by epoch.

At an epoch's start the pool is empty: its first batches wait while its episodes are read and
parsed and their clips opened (``reader/shared_decoder.py`` ``open_shared`` demuxes each clip),
and each episode's first draw decodes its window's frames before its own. This iterates
``--epochs`` whole epochs of ``LeRobotShardDataset(batch_size=32, return_uint8=True)`` in the
training process (``--windows``: ``tools/bench_peers.py``'s) and prints, per epoch, its wall time,
the median batch, its first and last batches, and the excess: the epoch's time beyond its batch
count times the median batch, what the start and the end cost over a steady batch.

    .venv-lerobot/bin/python tools/bench_epoch_start.py bench_out/peers/packed [--windows] [--epochs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from bench_peers import windows  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("packed")
    ap.add_argument("--windows", action="store_true")
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args(argv)
    from lerobot_wds.reader import LeRobotShardDataset

    ds = LeRobotShardDataset(a.packed, delta_timestamps=windows() if a.windows else None, return_uint8=True, seed=0,
                             batch_size=32)
    for epoch in range(a.epochs):
        ds.set_epoch(epoch)
        times, last = [], time.perf_counter()
        start = last
        for _ in ds:
            now = time.perf_counter()
            times.append(now - last)
            last = now
        median = statistics.median(times)
        print(f"epoch {epoch}: {len(times)} batches in {last - start:.2f} s, median batch {median * 1e3:.1f} ms, "
              f"first 5 {[round(t * 1e3) for t in times[:5]]} ms, last 5 {[round(t * 1e3) for t in times[-5:]]} ms, "
              f"excess {sum(times) - median * len(times):.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
