"""What one ranged read costs from the benchmarks' S3 API on loopback, by the size of the object read.

``tools/bench_peers.py --remote`` and ``tools/bench_remote.py`` serve shards from a moto server on
this machine, sharing its cores with the readers. This times ``--reads`` reads of ``--range-mb`` each
(one episode's range) from each file given, uploaded as one object, with no latency added: wall
time per read and the client's CPU per read. A server whose cost per read grows with the object,
not the range, makes a reader of large shards slower from it than from real object storage.

    .venv/bin/python tools/bench_s3_loopback.py bench_out/peers/packed/shard-000000.tar bench_out/peers200w/packed/shard-000000.tar
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))  # testkit/ (never installed)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="files to upload and read ranges of (e.g. shards)")
    ap.add_argument("--range-mb", type=float, default=1.7, help="bytes per read, in MB (default: one episode)")
    ap.add_argument("--reads", type=int, default=20)
    a = ap.parse_args(argv)

    import s3fs

    from testkit.servers import S3Server, s3_options

    server = S3Server()
    try:
        server.make_bucket("bench")
        fs = s3fs.S3FileSystem(**s3_options(server.endpoint_url))
        size = int(a.range_mb * 1e6)
        for i, path in enumerate(a.files):
            key = f"bench/object-{i}"
            fs.put_file(path, key)
            total = os.path.getsize(path)
            starts = [(k * size) % max(total - size, 1) for k in range(a.reads)]
            wall, cpu = time.perf_counter(), time.process_time()
            for start in starts:
                fs.cat_file(key, start=start, end=start + size)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"{path} ({total / 1e6:.0f} MB): {wall / a.reads * 1e3:.1f} ms a read of {a.range_mb} MB, "
                  f"client CPU {cpu / a.reads * 1e3:.1f} ms")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
