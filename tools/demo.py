"""``make demo``: pack a LeRobot v3.0 dataset, inspect it, stream a few batches through a DataLoader.

By default the shipped fixture ``tests/data/lerobot_v3_av1`` (6 episodes, 2 AV1 cameras, written
by lerobot 0.6.1) is packed into ``demo_out/`` with a small shard size so that it spans several
shards; ``--src`` packs another local root / fsspec URL / Hub repo id, and ``--synthetic N``
generates an N-episode dataset first (``testkit.synthetic``). The batches come from a plain
``torch.utils.data.DataLoader`` over ``lerobot_wds.reader.LeRobotShardDataset`` with a small delta window,
exactly as a training script would use it. Takes well under a minute on the fixture.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))  # testkit/ (never installed); an installed lerobot_wds comes first

DEFAULT_SRC = REPO / "tests" / "data" / "lerobot_v3_av1"


def _clear(out: Path) -> None:
    """Remove a previous demo output, refusing to delete a directory that is not one."""
    if not out.exists():
        return
    foreign = [p.name for p in out.iterdir() if p.name not in ("shards", "synthetic_src")]
    if foreign:
        raise SystemExit(f"{out}: holds {foreign[:3]}, not a demo output; pass another --out")
    shutil.rmtree(out)


def _describe(batch: dict) -> list[str]:
    lines = []
    for key, value in batch.items():
        if hasattr(value, "shape"):
            lines.append(f"  {key:34s} {str(value.dtype):14s} {tuple(value.shape)}")
        else:
            lines.append(f"  {key:34s} {type(value).__name__} of {len(value)}, e.g. {value[0]!r}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", default=str(DEFAULT_SRC), help="LeRobot v3.0 dataset (default: shipped fixture)")
    p.add_argument("--synthetic", type=int, metavar="N", help="generate an N-episode dataset and pack that instead")
    p.add_argument("--out", type=Path, default=REPO / "demo_out")
    p.add_argument("--shard-size", default="200KB", help="target shard size (small, to show several shards)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--num-workers", type=int, default=2)
    a = p.parse_args(argv)

    import torch
    from torch.utils.data import DataLoader

    from lerobot_wds.packer.pack import PackOptions, pack
    from lerobot_wds.packer.shard_plan import parse_size
    from lerobot_wds.packer.verify import inspect
    from lerobot_wds import LeRobotShardDataset

    _clear(a.out)
    src = a.src
    if a.synthetic:
        from testkit.synthetic import write_dataset

        t = time.perf_counter()
        src = str(write_dataset(a.out / "synthetic_src", episodes=[40 + 7 * (i % 9) for i in range(a.synthetic)],
                                cameras={"observation.images.top": (96, 128), "observation.images.wrist": (64, 80)}))
        print(f"== generated {a.synthetic} synthetic episodes in {time.perf_counter() - t:.1f} s: {src}")
    shards = a.out / "shards"

    print(f"== pack {src} -> {shards}")
    t = time.perf_counter()
    m = pack(src, str(shards), PackOptions(shard_size=parse_size(a.shard_size), progress=False))
    pack_s = time.perf_counter() - t
    total = sum(s.bytes for s in m.shards)
    print(f"packed {m.total_episodes} episodes, {m.total_frames} frames into {len(m.shards)} shards "
          f"({total / 1e6:.2f} MB) in {pack_s:.2f} s")

    print("== inspect")
    print(inspect(str(shards)))

    fps = m.fps
    camera = next(iter(m.videos), None)
    delta = {"action": [k / fps for k in range(8)]}
    if camera:
        delta[camera] = [-1 / fps, 0.0]
    ds = LeRobotShardDataset(str(shards), delta_timestamps=delta, episode_pool_size=4, seed=0)
    ds.set_epoch(0)
    loader = DataLoader(ds, batch_size=a.batch_size, num_workers=a.num_workers)
    print(f"== stream: DataLoader(batch_size={a.batch_size}, num_workers={a.num_workers}), "
          f"{len(ds)} samples/epoch, delta_timestamps on {sorted(delta)}")
    t = time.perf_counter()
    first_s, n, episodes = None, 0, set()
    for i, batch in enumerate(loader):
        if first_s is None:
            first_s = time.perf_counter() - t
            print("first batch:")
            print("\n".join(_describe(batch)))
        n += len(batch["index"])
        episodes.update(batch["episode_index"].tolist())
        if i + 1 >= a.batches:
            break
    elapsed = time.perf_counter() - t
    rest = max(elapsed - first_s, 1e-9)
    print(f"streamed {n} samples in {i + 1} batches from {len(episodes)} episodes: "
          f"first batch {first_s:.2f} s, then {(n - a.batch_size) / rest:.0f} samples/s "
          f"(torch {torch.__version__})")
    print(f"== done: shards in {shards}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
