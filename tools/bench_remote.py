"""Streaming from object storage vs local disk: steady-state frames/s, time to first batch, bytes.

One run does, on the same packed shards:

* local: ``LeRobotShardDataset(<dir>)`` through a ``DataLoader``;
* remote: the shards uploaded to a real S3 API on loopback (``moto`` server subprocess), read
  through ``tests/servers.py``'s proxy that adds ``--latency-ms`` (default 50 ms) to every request.

For each: time to first batch (epoch 0); steady-state frames/s over epochs 1..E, counted from
each epoch's first batch to its end (each epoch starts new DataLoader workers, as training does
without ``persistent_workers``; whole-epoch rates, start-up included, are printed beside it; local
and remote epochs alternate so that load drifts on a shared machine hit both); and bytes asked
from storage ÷ bytes of the shards consumed (1.0: every byte once; tar headers are never read;
an episode on a worker boundary is read by both workers, and a dataset with fewer episodes than
``--pool`` x ``--workers`` has each episode sliced over the workers and read by each of them: see
the README's "What shuffled means"; the proxy's own count of response body bytes is printed
beside it). Targets: remote ÷
local frames/s ≥ 0.9, bytes ratio ≤ 1.05. Prints ``dataset.io_stats()`` for both runs.

    python tools/bench_remote.py                    # the shipped fixture (320 frames, 2 cameras)
    python tools/bench_remote.py --synthetic 60     # 60 generated episodes (2 AV1 cameras)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))  # testkit/ (never installed); an installed lerobot_wds comes first


def epoch(ds, e: int, workers: int, batch_size: int) -> tuple[int, float, float, int]:
    """One epoch: (frames, seconds, seconds to the first batch, frames in the first batch)."""
    from torch.utils.data import DataLoader

    ds.set_epoch(e)
    t0 = time.perf_counter()
    first, n, n_first = None, 0, 0
    for batch in DataLoader(ds, batch_size=batch_size, num_workers=workers):
        n += len(batch["index"])
        if first is None:
            first, n_first = time.perf_counter() - t0, n
    return n, time.perf_counter() - t0, first, n_first


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--synthetic", type=int, metavar="N", help="generate and pack N episodes instead of the fixture")
    p.add_argument("--latency-ms", type=float, default=50.0, help="added by the proxy to every request")
    p.add_argument("--epochs", type=int, default=3, help="steady-state epochs after one warm-up epoch")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--pool", type=int, default=64, help="episode_pool_size (64: the default)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--shard-size", type=int, default=2_000_000, help="bytes per shard when packing")
    p.add_argument("--json", type=Path, help="also write the results here")
    a = p.parse_args(argv)

    import s3fs

    from lerobot_wds.packer.pack import PackOptions, pack
    from lerobot_wds import LeRobotShardDataset
    from lerobot_wds.reader.io_stats import format_stats
    from lerobot_wds.reader.storage import Store
    from testkit.servers import FaultProxy, Faults, S3Server, s3_options

    work = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    src = REPO / "tests/data/lerobot_v3_av1"
    if a.synthetic:
        from testkit.synthetic import write_dataset

        src = write_dataset(work / "src", episodes=[40 + 7 * (i % 9) for i in range(a.synthetic)],
                            cameras={"observation.images.top": (240, 320), "observation.images.wrist": (96, 128)})
    local = str(work / "packed")
    manifest = pack(str(src), local, PackOptions(shard_size=a.shard_size, progress=False))
    shard_bytes = sum(s.bytes for s in manifest.shards)
    print(f"dataset: {manifest.total_episodes} episodes, {manifest.total_frames} frames, "
          f"{len(manifest.shards)} shards, {shard_bytes / 1e6:.2f} MB; {a.workers} workers, batch {a.batch_size}")

    server = S3Server()
    proxy = None
    try:
        server.make_bucket("bench")
        s3fs.S3FileSystem(**s3_options(server.endpoint_url)).put(local, "bench/packed", recursive=True)
        proxy = FaultProxy(server.port, Faults(latency_s=a.latency_ms / 1000))
        runs = {
            "local": LeRobotShardDataset(Store(local), seed=0, episode_pool_size=a.pool),
            "remote": LeRobotShardDataset(
                Store("s3://bench/packed", s3_options(proxy.endpoint_url, client_retries=True)), seed=0,
                episode_pool_size=a.pool),
        }
        results = {name: {"frames": 0, "seconds": 0.0, "steady_frames": 0, "steady_seconds": 0.0} for name in runs}
        for name, ds in runs.items():  # warm-up epoch 0: time to first batch
            results[name]["first_batch_s"] = epoch(ds, 0, a.workers, a.batch_size)[2]
        for e in range(1, a.epochs + 1):  # steady state, alternating so that load drifts hit both
            for name, ds in runs.items():
                n, sec, first, n_first = epoch(ds, e, a.workers, a.batch_size)
                r = results[name]
                r["frames"] += n
                r["seconds"] += sec
                r["steady_frames"] += n - n_first  # after each epoch's first batch: workers started
                r["steady_seconds"] += sec - first
        consumed = shard_bytes * (a.epochs + 1)
        for name, ds in runs.items():
            r = results[name]
            r["frames_per_s"] = r["steady_frames"] / r["steady_seconds"]
            r["epoch_frames_per_s"] = r["frames"] / r["seconds"]
            r["stats"] = ds.io_stats()
            r["bytes_ratio"] = r["stats"].get("bytes_requested", 0) / consumed
            print(f"\n== {name}: first batch {r['first_batch_s']:.3f} s, steady {r['frames_per_s']:.1f} frames/s "
                  f"(whole epochs, worker start-up included: {r['epoch_frames_per_s']:.1f}), "
                  f"bytes requested / shard bytes consumed {r['bytes_ratio']:.3f}")
            print(format_stats(r["stats"]))
        results["remote"]["proxy_body_ratio"] = proxy.counts["body_bytes"] / consumed
        print(f"proxy: {proxy.counts['requests']} requests, body bytes / shard bytes consumed "
              f"{results['remote']['proxy_body_ratio']:.3f}")
        ratio = results["remote"]["frames_per_s"] / results["local"]["frames_per_s"]
        epoch_ratio = results["remote"]["epoch_frames_per_s"] / results["local"]["epoch_frames_per_s"]
        print(f"\nremote ({a.latency_ms:.0f} ms/request) / local steady frames/s = {ratio:.3f} (target >= 0.9; "
              f"whole epochs {epoch_ratio:.3f}); "
              f"bytes ratio {results['remote']['bytes_ratio']:.3f} (target <= 1.05); "
              f"time to first batch {results['remote']['first_batch_s']:.3f} s remote, "
              f"{results['local']['first_batch_s']:.3f} s local")
        if a.json:
            a.json.write_text(json.dumps({"ratio": ratio, "latency_ms": a.latency_ms, **results}, indent=1))
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
