"""Batch mixing of the episode pool against a global shuffle, on datasets of any size, without data.

The reader's order is a pure function of episode lengths, seed, pool size and workers
(``epoch_plan.plan_spans`` + ``pool.pool_order``), so its batches can be formed exactly as a
DataLoader forms them (batch b from worker b % num_workers, that worker's next ``batch`` draws)
from lengths alone. For each dataset size this prints distinct episodes per batch, the share of a
batch's episodes also in the previous batch, and the share also in the previous batch of the same
worker (``num_workers`` batches back: consecutive batches come from different workers, so the first
share alone would hide what one worker's pool repeats), for the pool and for a global shuffle
(LeRobotDataset with ``shuffle=True``: a uniform permutation of all frames), over one epoch.

    .venv/bin/python tools/mixing_sim.py --episodes 50,200,1000 --pool 64,128 --workers 0,2
"""

from __future__ import annotations

import argparse
import random


def measure(batches: list[list[int]]) -> tuple[float, float]:
    """(distinct episodes per batch, share of a batch's episodes also in the previous batch), from
    each batch's episode indices (tools/bench_peers.py measures real batches with it too)."""
    full = [set(b) for b in batches]
    distinct = sum(map(len, full)) / max(len(full), 1)
    return distinct, overlap(batches)


def overlap(batches: list[list[int]], lag: int = 1) -> float:
    """The mean share of a batch's episodes also in the batch ``lag`` batches before it."""
    full = [set(b) for b in batches]
    return sum(len(a & b) / len(b) for a, b in zip(full, full[lag:])) / max(len(full) - lag, 1)


def pool_batches(lengths: list[int], pool: int, workers: int, batch: int, seed: int) -> list[list[int]]:
    from lerobot_wds.reader.epoch_plan import plan_spans
    from lerobot_wds.reader.pool import pool_order, stable_seed
    from lerobot_wds.reader.world import World

    per_worker = []
    for w in range(max(workers, 1)):
        world = World(0, 1, w, max(workers, 1))
        spans = plan_spans([lengths], seed, 0, world, True, pool)
        order = pool_order([s.length for s in spans], pool, stable_seed(seed, 0, 0, w))
        eps = [spans[p].position for p, _, _ in order]
        per_worker.append([eps[i:i + batch] for i in range(0, len(eps) - batch + 1, batch)])
    out = []
    for i in range(max(map(len, per_worker))):
        out += [bs[i] for bs in per_worker if i < len(bs)]
    return out


def global_batches(lengths: list[int], batch: int, seed: int) -> list[list[int]]:
    frames = [e for e, n in enumerate(lengths) for _ in range(n)]
    random.Random(seed).shuffle(frames)
    return [frames[i:i + batch] for i in range(0, len(frames) - batch + 1, batch)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", default="50,200,1000")
    ap.add_argument("--pool", default="64")
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--length", type=int, default=260, help="mean episode length (uniform in [0.5, 1.5] x)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    print("| episodes | workers | pool | distinct/batch: pool | global | ratio | overlap: pool | global "
          "| same worker: pool | global |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in map(int, a.episodes.split(",")):
        rng = random.Random(n)
        lengths = [rng.randint(a.length // 2, a.length * 3 // 2) for _ in range(n)]
        gb = global_batches(lengths, a.batch, a.seed)
        g = measure(gb)
        for nw in map(int, a.workers.split(",")):
            g_same = overlap(gb, max(nw, 1))
            for pool in map(int, a.pool.split(",")):
                pb = pool_batches(lengths, pool, nw, a.batch, a.seed)
                p, p_same = measure(pb), overlap(pb, max(nw, 1))
                print(f"| {n} | {nw} | {pool} | {p[0]:.1f} | {g[0]:.1f} | {p[0] / g[0]:.2f} | {p[1]:.2f} | {g[1]:.2f} "
                      f"| {p_same:.2f} | {g_same:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
