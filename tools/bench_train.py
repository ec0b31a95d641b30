"""Data loading as lerobot's own training loop sees it: ``lerobot-train`` on the lerobot dataset
against ``lerobot-wds train`` on its packed shards, in one run (run in the lerobot env).

Each row is a fresh process running lerobot 0.6.1's training script with the training step
replaced by a no-op, so what is timed is the loop's data path: ``next()`` on the DataLoader that
lerobot builds and accelerate prepares, lerobot's uint8 → float conversion of the cameras and its
preprocessor (normalization). ACT as a small model (its 16-step ``action`` window; the cameras
without a window), batch 32, lerobot's other defaults. Rows:

- ``lerobot``: ``lerobot-train`` itself (``LeRobotDataset``, its ``EpisodeAwareSampler``);
- ``ours-single``: ``lerobot-wds train`` with the DataLoader batching single samples (what it did
  before the dataset built lerobot's batches);
- ``ours``: ``lerobot-wds train`` as it is (the dataset builds the batches; reader/lerobot_train.py).

Two measures per row, one after the other on the same DataLoader, each samples/s over ``--steps``
batches after ``--warmup``: "alone", the prepared DataLoader iterated with nothing else (roughly
what the loop costs the CPU when the conversion, normalization and step run on a GPU); then
"loop", lerobot's loop taking them (on this CPU-only machine its own per-batch work in the training
process counts). Rows interleaved over ``--rounds`` rounds (medians reported), at each of
``--workers``; peak RSS of the process tree (``bench_refs.rss_parts``).

    .venv-lerobot/bin/python tools/bench_train.py [--data bench_out/peers] [--workers 0,2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

ROWS = ("lerobot", "ours-single", "ours")
ACT = ["--policy.type=act", "--policy.dim_model=32", "--policy.n_heads=2", "--policy.dim_feedforward=64",
       "--policy.n_encoder_layers=1", "--policy.n_vae_encoder_layers=1", "--policy.chunk_size=16",
       "--policy.n_action_steps=16", "--policy.latent_dim=8", "--policy.pretrained_backbone_weights=null",
       "--policy.device=cpu", "--policy.push_to_hub=false", "--wandb.enable=false", "--save_checkpoint=false",
       "--log_freq=0", "--batch_size=32"]


def child(row: str, root: str, workers: int, warmup: int, steps: int, out: str) -> None:
    """One row, in this process: lerobot's training script with a no-op step, timed."""
    from lerobot.scripts import lerobot_train as script

    alone: list[tuple[float, int]] = []  # (time, batch size) of each batch taken by this generator alone
    loop: list[tuple[float, int]] = []  # ... then of each batch the training loop took
    cycle = script.cycle

    def timed(loader):
        batches = cycle(loader)
        for batch in batches:  # the loader alone (what a GPU run's loop costs the CPU aside, roughly)
            alone.append((time.perf_counter(), len(batch["index"])))
            if len(alone) > warmup + steps:
                break
        for batch in batches:
            loop.append((time.perf_counter(), len(batch["index"])))
            yield batch

    script.cycle = timed
    script.update_policy = lambda tracker, *a, **k: (tracker, None)
    args = [*ACT, f"--num_workers={workers}", f"--steps={warmup + steps + 1}",
            f"--output_dir={tempfile.mkdtemp(prefix='bench_train_')}/run", f"--dataset.root={root}",
            "--dataset.repo_id=bench/peers"]
    start = time.perf_counter()
    if row == "lerobot":
        sys.argv = ["lerobot-train", *args]
        script.main()
    else:
        from lerobot_wds.reader import lerobot_train

        if row == "ours-single":
            lerobot_train._batching_loader = lambda base: base
        lerobot_train.main(args)
    Path(out).write_text(json.dumps({"samples_per_s": rate(loop, warmup), "alone_samples_per_s": rate(alone, warmup),
                                     "first_batch_s": alone[0][0] - start}))


def rate(batches: list[tuple[float, int]], warmup: int) -> float:
    """Samples/s from (arrival time, batch size) pairs, the first ``warmup`` batches left out."""
    return sum(n for _, n in batches[warmup + 1:]) / (batches[-1][0] - batches[warmup][0])


def run_row(row: str, root: str, workers: int, warmup: int, steps: int) -> dict:
    from bench_refs import PeakRSS

    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        proc = subprocess.Popen([sys.executable, __file__, "--child", row, root, str(workers), str(warmup),
                                 str(steps), f.name], env={**os.environ, "HF_HUB_OFFLINE": "1"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        with PeakRSS(proc.pid) as peak:
            _, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"row {row} at {workers} workers failed:\n{err[-3000:]}")
        return {**json.loads(Path(f.name).read_text()), "peak_rss_gb": peak.peak / 1e9}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO / "bench_out" / "peers",
                    help="where tools/bench_peers.py keeps the dataset and its packed shards")
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--warmup", type=int, default=10, help="steps not counted")
    ap.add_argument("--steps", type=int, default=60, help="steps timed")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        row, root, workers, warmup, steps, out = a.child
        child(row, root, int(workers), int(warmup), int(steps), out)
        return 0
    from bench_peers import prepare

    paths = prepare(a.data)
    roots = {"lerobot": paths["lerobot"], "ours-single": paths["ours"], "ours": paths["ours"]}
    results: dict[tuple[str, int], list[dict]] = {}
    for r in range(a.rounds):
        for nw in (int(w) for w in a.workers.split(",")):
            for row in ROWS:
                got = run_row(row, roots[row], nw, a.warmup, a.steps)
                results.setdefault((row, nw), []).append(got)
                print(f"round {r + 1}: {row:12s} {nw} workers: {got['samples_per_s']:7.1f} samples/s in the loop, "
                      f"{got['alone_samples_per_s']:7.1f} from the loader alone, "
                      f"first batch {got['first_batch_s']:5.1f} s, peak RSS {got['peak_rss_gb']:.2f} GB", flush=True)
    print(f"\nmedians of {a.rounds} rounds, batch 32, ACT (16-step action window), training step a no-op")
    print(f"{'row':12s} {'workers':>7s} {'loop':>7s} {'÷ lerobot':>10s} {'alone':>7s} {'÷ lerobot':>10s} "
          f"{'peak RSS GB':>12s}")

    def med(row: str, nw: int, key: str) -> float:
        return statistics.median(g[key] for g in results[(row, nw)])

    for row, nw in results:
        loop, alone = med(row, nw, "samples_per_s"), med(row, nw, "alone_samples_per_s")
        print(f"{row:12s} {nw:7d} {loop:7.1f} {loop / med('lerobot', nw, 'samples_per_s'):10.2f} {alone:7.1f} "
              f"{alone / med('lerobot', nw, 'alone_samples_per_s'):10.2f} {med(row, nw, 'peak_rss_gb'):12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
