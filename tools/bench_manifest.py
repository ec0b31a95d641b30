"""What reading a ``manifest.json`` costs in memory and time, for a large real-shaped manifest and
for hostile ones of the same size.

From a packed dataset's manifest, writes one of ``--episodes`` episodes as ``lerobot-wds pack``
writes it (``Manifest.to_json``: the dataset's episodes repeated with new indices and byte ranges,
``--per-shard`` to a shard), and files of the same size made of the JSON that costs Python the
most per byte (``[{},{},...]``, ``[[],[],...]``, ``[0,0,...]``, two-letter strings, and objects
and arrays as dense as a reader takes: what a hostile manifest could be).
Each is read by ``Store(dir).read_manifest()`` in a fresh process (the hostile ones are refused
after parsing); prints the file's size, the process's peak resident memory over what it held
before the read (``VmHWM``, reset before it; Linux), that as a multiple of the file, and seconds.

    .venv/bin/python tools/bench_manifest.py bench_out/peers/packed --episodes 200000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

MEASURE = r"""
import sys, time
from lerobot_wds.format import FormatError
from lerobot_wds.reader.storage import Store
def kb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from what the process holds now
before = kb("VmRSS:")
t = time.perf_counter()
try:
    episodes = Store(sys.argv[1]).read_manifest().total_episodes
except FormatError as e:
    episodes = f"refused ({str(e)[:60]}...)"
print(kb("VmHWM:") - before, time.perf_counter() - t, episodes, sep="\t")
"""


def real_shaped(packed: Path, episodes: int, per_shard: int) -> str:
    """A manifest of ``episodes`` episodes shaped as ``packed``'s (its episodes repeated)."""
    from lerobot_wds.format import Manifest, ManifestEpisode, MemberRef

    m = Manifest.from_json((packed / "manifest.json").read_bytes())
    model = [e for s in m.shards for e in s.episodes]
    shard = m.shards[0]
    shards, frame = [], 0
    for first in range(0, episodes, per_shard):
        eps, offset = [], 512
        for i in range(first, min(first + per_shard, episodes)):
            e = model[i % len(model)]
            members = {}
            for name, ref in e.members.items():
                members[name] = MemberRef(offset, ref.size, ref.xxh3)
                offset += -(-ref.size // 512) * 512 + 512
            eps.append(ManifestEpisode(i, e.length, frame, members))
            frame += e.length
        shards.append(dataclasses.replace(shard, name=f"shard-{len(shards):06d}.tar", bytes=offset,
                                          episodes=tuple(eps)))
    return dataclasses.replace(m, shards=tuple(shards)).to_json()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("packed", type=Path, help="a packed dataset whose manifest gives the episodes' shape")
    ap.add_argument("--episodes", type=int, default=200_000)
    ap.add_argument("--per-shard", type=int, default=1000)
    a = ap.parse_args(argv)

    text = real_shaped(a.packed, a.episodes, a.per_shard)
    n = len(text.encode())
    containers = text.count("{") + text.count("[")
    print(f"real-shaped: {containers:,} JSON objects and arrays, one per {n / containers:.0f} bytes "
          f"(written compactly: one per {len(json.dumps(json.loads(text), separators=(',', ':'))) / containers:.0f})")
    cases = {f"real-shaped, {a.episodes:,} episodes": text,
             "[{},{},...]": "[" + ",".join(["{}"] * (n // 3)) + "]",
             "[[],[],...]": "[" + ",".join(["[]"] * (n // 3)) + "]",
             "[0,0,...]": "[" + ",".join(["0"] * (n // 2)) + "]",
             '["ab","ab",...]': "[" + ",".join(['"ab"'] * (n // 5)) + "]",  # a new str object each
             # as many containers as a reader takes, the rest of the bytes what costs most next to them
             "[{},{},...], one per 32 bytes": "[" + ",".join(["{}" + " " * 29] * (n // 32)) + "]",
             '[{"0":0,"1":0,...},...], one per 32 bytes': "[" + ",".join(
                 ["{" + ",".join(f'"{k}":0' for k in range(4)) + "}" + " " * 6] * (n // 32)) + "]"}
    print("| manifest | MB | peak RSS over before, MB | × its size | s |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for k, (label, body) in enumerate(cases.items()):
            d = Path(tmp) / str(k)
            d.mkdir()
            (d / "manifest.json").write_text(body)
            size = (d / "manifest.json").stat().st_size
            out = subprocess.run([sys.executable, "-c", MEASURE, str(d)], capture_output=True, text=True, check=True)
            kb, secs, episodes = out.stdout.strip().split("\t")
            print(f"| {label} ({episodes}) | {size / 1e6:.0f} | {int(kb) / 1e3:.0f} | {int(kb) * 1e3 / size:.1f} "
                  f"| {float(secs):.1f} |", flush=True)
            (d / "manifest.json").unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
