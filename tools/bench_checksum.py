"""What checking every member's XXH3-64 on read costs: read throughput with checksums on and off.

The same shards are read through two manifests: the pack's own (format version 2, a checksum per
member, checked on every read) and a copy with the checksums stripped (what a version-1 pack is:
read unchecked). Both are real read paths of ``LeRobotShardDataset``; nothing is patched. Rows
alternate on/off ``--repeats`` times (load drift on a shared machine hits both) and the median
epoch time of each is reported (0 workers, ``return_uint8=True``, no shuffle: the read, parse and
decode path of training). Also the bare hash rate over all member bytes, and that hash time as a
share of the epoch: the checksum's whole cost, free of timing noise.

    .venv/bin/python tools/bench_checksum.py bench_out/peers/packed
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def stripped_copy(packed: Path, into: Path) -> Path:
    """``into`` holding links to ``packed``'s shards and a manifest without member checksums."""
    into.mkdir(parents=True, exist_ok=True)
    m = json.loads((packed / "manifest.json").read_text())
    for s in m["shards"]:
        (into / s["name"]).symlink_to((packed / s["name"]).resolve())
        for e in s["episodes"]:
            e["members"] = {k: v[:2] for k, v in e["members"].items()}
    m["format_version"] = 1
    (into / "manifest.json").write_text(json.dumps(m))
    return into


def epoch_seconds(url: str) -> tuple[float, int]:
    from lerobot_wds import LeRobotShardDataset

    ds = LeRobotShardDataset(url, return_uint8=True, shuffle=False)
    t = time.perf_counter()
    n = sum(1 for _ in ds)
    return time.perf_counter() - t, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("packed", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import logging

    import xxhash

    logging.getLogger("lerobot_wds.reader.dataset").setLevel(logging.ERROR)  # the version-1 warning
    m = json.loads((args.packed / "manifest.json").read_text())
    shards = {s["name"]: (args.packed / s["name"]).read_bytes() for s in m["shards"]}
    members = [memoryview(shards[s["name"]])[o : o + n] for s in m["shards"] for e in s["episodes"]
               for o, n, _ in e["members"].values()]
    total = sum(v.nbytes for v in members)
    t = time.perf_counter()
    for v in members:
        xxhash.xxh3_64_hexdigest(v)
    hash_s = time.perf_counter() - t
    print(f"bare XXH3-64 over all members: {total / hash_s / 1e9:.2f} GB/s ({total / 1e6:.1f} MB in {hash_s * 1e3:.1f} ms)")

    tmp = Path(tempfile.mkdtemp(prefix="bench_checksum_"))
    try:
        off = str(stripped_copy(args.packed, tmp / "unchecked"))
        on = str(args.packed)
        times: dict[str, list[float]] = {"on": [], "off": []}
        for _ in range(args.repeats):
            for label, url in (("on", on), ("off", off)):
                s, n = epoch_seconds(url)
                times[label].append(s)
        a, b = statistics.median(times["on"]), statistics.median(times["off"])
        print(f"epoch of {n} samples, median of {args.repeats}: checksums on {a:.2f} s, off {b:.2f} s; "
              f"throughput on ÷ off = {b / a:.3f}; hashing = {hash_s / a:.2%} of the epoch")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
