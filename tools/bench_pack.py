"""Packing throughput against plainly copying the same source files, on the same disk, in one run.

    python tools/bench_pack.py [--episodes 60] [--size 240x320] [--texture 10] [--shard-size 16MB] [--repeats 5]

Generates (once, cached under ``bench_out/``) a synthetic LeRobot v3.0 dataset with two AV1
cameras whose frames carry grain and sensor noise (``--texture``; ~8 KB per frame at 240x320, a
camera-like bitrate: the flat drawings of ``--texture 0`` compress to ~0.8 KB, where fixed
per-episode and per-packet costs dominate), then times, ``--repeats`` times each, interleaved:

* ``copy``: ``shutil.copy`` of ``data/``, ``videos/`` and ``meta/`` into a fresh directory;
* ``copy+fsync``: the same, each copied file fsynced before the next;
* ``copy+sha256``: read, sha256 and write each file in Python, one thread, no fsync: the byte work
  any packer that checksums its output (the manifest's per-shard sha256) must do. sha256 alone runs
  at ~1.5 GB/s on one core here, slower than the kernel's copy (~2.3 GB/s); pack hashes on a
  second thread while it writes, so it can beat this row, but only with cores to spare;
* ``pack wN``: ``lerobot-wds pack`` (remux, no re-encode) with N worker processes. Like
  ``copy+fsync`` it leaves its output durable: each shard is fsynced before its rename (and the
  manifest before it returns), so ``× copy+fsync`` is the like-for-like ratio;
* ``pack wN nofsync``: the same with the shards' flush to disk turned off for this measurement
  only (``PackOptions(durable=False)``; the two small state files keep their fsync), the like-for-like
  run against plain ``copy``, which never waits for the disk (its files are deleted before the
  kernel writes them out).

Every run reads the source from the page cache (copy and pack read the same bytes; one warm-up
copy first) and writes a fresh directory on the same disk. Reported: median seconds, output MB/s
(10^6 bytes/s; for copy, bytes copied), episodes/s, and the ratio of each run's MB/s to copy's and
to copy+fsync's. Target: remux packing ≥ 0.5× copy.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # testkit/ (never installed); an installed lerobot_wds comes first

import lerobot_wds.packer.task  # noqa: E402
from lerobot_wds.packer.pack import PackOptions, pack  # noqa: E402
from lerobot_wds.packer.shard_plan import parse_size  # noqa: E402
from testkit.synthetic import write_dataset  # noqa: E402


def dataset(cache: Path, episodes: int, size: tuple[int, int], texture: float) -> Path:
    """The synthetic source, generated once per (episodes, size, texture) and reused afterwards."""
    root = cache / (f"source-{episodes}ep-{size[0]}x{size[1]}" + (f"-tex{texture:g}" if texture else ""))
    if not (root / "meta/info.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        lengths = [80 + (37 * e) % 61 for e in range(episodes)]  # 80–140 frames, deterministic
        t = time.perf_counter()
        write_dataset(root.with_suffix(".tmp"), episodes=lengths, fps=30,
                      cameras={"observation.images.top": size, "observation.images.wrist": size},
                      video_files_size_mb=8.0, data_files_size_mb=1.0, texture=texture)
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


def run_copy_sha256(src: Path, dst: Path) -> int:
    """The byte work of a packer that checksums its output: read, sha256 and write every byte
    (1 MiB chunks, one thread, no fsync)."""
    for sub in ("data", "videos", "meta"):
        for p in sorted((src / sub).rglob("*")):
            if p.is_file():
                q = dst / p.relative_to(src)
                q.parent.mkdir(parents=True, exist_ok=True)
                h = hashlib.sha256()
                with open(p, "rb") as f, open(q, "wb") as g:
                    while b := f.read(1 << 20):
                        h.update(b)
                        g.write(b)
    return tree_bytes(dst)


def run_pack(src: Path, dst: Path, workers: int, shard_size: int, sync: bool = True) -> int:
    """Pack; with ``sync=False`` shards are not flushed to disk (``PackOptions.durable``; this measurement only)."""
    m = pack(str(src), str(dst), PackOptions(shard_size=shard_size, workers=workers, progress=False, durable=sync))
    return sum(s.bytes for s in m.shards)


def video_stats(src: Path) -> tuple[int, int]:
    """(bytes, frames) of all source mp4s, frames counted from their sample tables."""
    from lerobot_wds.packer.sampletable import read_sample_table

    nbytes = frames = 0
    for p in sorted((src / "videos").rglob("*.mp4")):
        with open(p, "rb") as f:
            table = read_sample_table(f)
        nbytes, frames = nbytes + p.stat().st_size, frames + (len(table.size) if table else 0)
    return nbytes, frames


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--size", default="240x320", help="camera HxW")
    ap.add_argument("--texture", type=float, default=10.0, help="frame grain/noise std (0: flat drawings)")
    ap.add_argument("--shard-size", default="16MB",
                    help="16MB: 7 shards, enough for 2 workers; per-shard costs (create, fsync, rename) "
                         "weigh more than with the default 512MB")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=REPO / "bench_out")
    ap.add_argument("--ray", action="store_true", help="also time --executor ray (Ray local mode, 2 CPUs) and print "
                    "the 1 TB / 50,000-episode estimate of tools/pack_estimate.py")
    args = ap.parse_args()
    h, w = (int(x) for x in args.size.split("x"))
    src = dataset(args.cache, args.episodes, (h, w), args.texture)
    work = args.cache / "runs"
    kinds = {"copy": lambda d: run_copy(src, d), "copy+fsync": lambda d: run_copy(src, d, sync=True),
             "copy+sha256": lambda d: run_copy_sha256(src, d)}
    for n in (1, 2):
        kinds[f"pack w{n}"] = lambda d, n=n: run_pack(src, d, n, parse_size(args.shard_size))
    for n in (1, 2):
        kinds[f"pack w{n} nofsync"] = lambda d, n=n: run_pack(src, d, n, parse_size(args.shard_size), sync=False)
    if args.ray:  # Ray started and its workers warmed once, before timing: a cluster is already up in use
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        kinds["pack ray"] = lambda d: sum(s.bytes for s in pack(str(src), str(d), PackOptions(
            shard_size=parse_size(args.shard_size), executor="ray", progress=False)).shards)
        kinds["pack ray"](work / "warm-ray")
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
    vbytes, vframes = video_stats(src)
    print(f"source: {src.name}, {tree_bytes(src) / 1e6:.1f} MB, {args.episodes} episodes, 2 AV1 cameras {h}x{w}, "
          f"{vbytes / max(vframes, 1) / 1e3:.1f} KB per video frame; shard size {args.shard_size}; "
          f"median of {args.repeats}")
    print(f"{'run':<17} {'s':>7} {'MB/s':>8} {'ep/s':>8} {'× copy':>7} {'× copy+fsync':>13}")
    rate = {k: nbytes[k] / statistics.median(times[k]) / 1e6 for k in kinds}
    for kind in kinds:
        t = statistics.median(times[kind])
        print(f"{kind:<17} {t:7.3f} {rate[kind]:8.1f} {args.episodes / t:8.1f} "
              f"{rate[kind] / rate['copy']:7.2f} {rate[kind] / rate['copy+fsync']:13.2f}")
    if args.ray:
        from tools.pack_estimate import Measured, Target, report

        print(f"ray / local pool (w2): {rate['pack ray'] / rate['pack w2']:.2f}x (target ≥ 0.8)")
        print(report(Measured(statistics.median(times["pack w1"]) / args.episodes, nbytes["pack w1"] / args.episodes,
                              efficiency=rate["pack ray"] / (2 * rate["pack w1"])), Target()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
