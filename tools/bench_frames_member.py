"""Why the frames member is Arrow IPC: size and read time against Parquet, per episode.

For every episode of a packed dataset, takes its ``frames.arrow`` member, writes the same table as
Parquet (snappy, pyarrow's default, and zstd) in memory, and times reading each back into an Arrow
table, as the reader does once per episode. Prints bytes and microseconds per episode.

    python tools/bench_frames_member.py                 # the two shipped fixtures, packed to a temp dir
    python tools/bench_frames_member.py PACKED_DIR ...  # packed datasets of your own
"""

from __future__ import annotations

import io
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]

REPEATS = 20


def frames_members(packed: Path) -> list[bytes]:
    out = []
    for shard in sorted(packed.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            out += [tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".frames.arrow")]
    return out


def best_us(fn, data: list[bytes]) -> float:
    """Best of REPEATS passes over all episodes, in microseconds per episode."""
    best = float("inf")
    for _ in range(REPEATS):
        t = time.perf_counter()
        for b in data:
            fn(b)
        best = min(best, time.perf_counter() - t)
    return best / len(data) * 1e6


def parquet_bytes(table: pa.Table, compression: str) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=compression)
    return sink.getvalue()


def measure(packed: Path) -> None:
    arrow = frames_members(packed)
    tables = [pa.ipc.open_file(pa.BufferReader(b)).read_all() for b in arrow]
    variants = {"arrow ipc": (arrow, lambda b: pa.ipc.open_file(pa.BufferReader(b)).read_all())}
    for comp in ("snappy", "zstd"):
        variants[f"parquet {comp}"] = ([parquet_bytes(t, comp) for t in tables], lambda b: pq.read_table(pa.BufferReader(b)))
    print(f"{packed.name}: {len(arrow)} episodes, {sum(t.num_rows for t in tables)} frames, columns {tables[0].column_names}")
    print(f"  {'member':16s} {'bytes/episode':>14s} {'read µs/episode':>16s}")
    for name, (blobs, read) in variants.items():
        print(f"  {name:16s} {sum(map(len, blobs)) / len(blobs):14.0f} {best_us(read, blobs):16.1f}")


def main(argv: list[str]) -> int:
    if argv:
        for path in argv:
            measure(Path(path))
        return 0
    from lerobot_wds.packer.pack import PackOptions, pack

    with tempfile.TemporaryDirectory() as tmp:
        for name in ("lerobot_v3_av1", "lerobot_v3_images"):
            out = Path(tmp, name)
            pack(str(REPO / "tests/data" / name), str(out), PackOptions(progress=False))
            measure(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
