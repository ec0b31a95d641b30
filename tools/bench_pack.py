"""Packing throughput against plainly copying the same source files, on the same disk, in one run.

    python tools/bench_pack.py [--episodes 60] [--size 240x320] [--shard-size 4MB] [--repeats 5]

Generates (once, cached under ``bench_out/``) a synthetic LeRobot v3.0 dataset with two AV1
cameras, then times, ``--repeats`` times each, interleaved:

* ``copy``: ``shutil.copy`` of ``data/``, ``videos/`` and ``meta/`` into a fresh directory
  (``copy+fsync``: each copied file fsynced, as pack fsyncs each shard before renaming it);
* ``pack wN``: ``lerobot-wds pack`` (remux, no re-encode) with N worker processes.

Every run reads the source from the page cache (the generator just wrote it; copy and pack read the
same bytes), and writes a fresh output directory on the same disk. Reported: median seconds,
output MB/s (10^6 bytes/s; for copy, bytes copied), episodes/s, and the ratio of each pack's MB/s
to copy's MB/s. Target: remux packing ≥ 0.5× copy.

Packing costs a few microseconds per video packet (PyAV mux), so its MB/s scales with packet size;
the synthetic frames compress to ~1 KB packets, far smaller than real camera footage.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from packer.pack import PackOptions, pack  # noqa: E402
from packer.plan import parse_size  # noqa: E402
from packer.synthetic import write_dataset  # noqa: E402


def dataset(cache: Path, episodes: int, size: tuple[int, int]) -> Path:
    """The synthetic source, generated once per (episodes, size) and reused afterwards."""
    root = cache / f"source-{episodes}ep-{size[0]}x{size[1]}"
    if not (root / "meta/info.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        lengths = [80 + (37 * e) % 61 for e in range(episodes)]  # 80–140 frames, deterministic
        t = time.perf_counter()
        write_dataset(root.with_suffix(".tmp"), episodes=lengths, fps=30,
                      cameras={"observation.images.top": size, "observation.images.wrist": size},
                      video_files_size_mb=8.0, data_files_size_mb=1.0)
        root.with_suffix(".tmp").rename(root)
        print(f"generated {root} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return root


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def run_copy(src: Path, dst: Path, sync: bool = False) -> int:
    """shutil.copy of data/, videos/, meta/; with ``sync``, fsync each copy (pack fsyncs each shard)."""
    for sub in ("data", "videos", "meta"):
        for p in sorted((src / sub).rglob("*")):
            if p.is_file():
                q = dst / p.relative_to(src)
                q.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(p, q)
                if sync:
                    with open(q, "rb") as f:
                        os.fsync(f.fileno())
    return tree_bytes(dst)


def run_pack(src: Path, dst: Path, workers: int, shard_size: int) -> int:
    m = pack(str(src), str(dst), PackOptions(shard_size=shard_size, workers=workers, progress=False))
    return sum(s.bytes for s in m.shards)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--size", default="240x320", help="camera HxW")
    ap.add_argument("--shard-size", default="4MB")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=REPO / "bench_out")
    args = ap.parse_args()
    h, w = (int(x) for x in args.size.split("x"))
    src = dataset(args.cache, args.episodes, (h, w))
    work = args.cache / "runs"
    kinds = {"copy": lambda d: run_copy(src, d), "copy+fsync": lambda d: run_copy(src, d, sync=True)}
    for n in (1, 2):
        kinds[f"pack w{n}"] = lambda d, n=n: run_pack(src, d, n, parse_size(args.shard_size))
    times: dict[str, list[float]] = {k: [] for k in kinds}
    nbytes: dict[str, int] = {}
    run_copy(src, work / "warm")  # page-cache the source for everyone
    shutil.rmtree(work)
    for r in range(args.repeats):
        for kind, fn in kinds.items():
            dst = work / f"{kind.replace(' ', '_')}-{r}"
            t = time.perf_counter()
            nbytes[kind] = fn(dst)
            times[kind].append(time.perf_counter() - t)
            shutil.rmtree(dst)
    print(f"source: {src.name}, {tree_bytes(src) / 1e6:.1f} MB, {args.episodes} episodes, 2 AV1 cameras {h}x{w}; "
          f"shard size {args.shard_size}; median of {args.repeats}")
    print(f"{'run':<11} {'s':>7} {'MB/s':>8} {'ep/s':>8} {'× copy':>7} {'× copy+fsync':>13}")
    rate = {k: nbytes[k] / statistics.median(times[k]) / 1e6 for k in kinds}
    for kind in kinds:
        t = statistics.median(times[kind])
        print(f"{kind:<11} {t:7.3f} {rate[kind]:8.1f} {args.episodes / t:8.1f} "
              f"{rate[kind] / rate['copy']:7.2f} {rate[kind] / rate['copy+fsync']:13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
