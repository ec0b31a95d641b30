"""How close to the decode limit a batched reader can come: the shared decoder bare, on both cores.

``tools/bench_peers.py`` compares each row with the decode limit: bare torchcodec decoding (and
converting to RGB) each needed frame once, in file order, two threads at once for 0 workers. The
reader decodes lerobot's clips through its shared decoder (``reader/shared_decoder.py``) instead,
in the pool's order, and converts each frame into a batch's row. This measures, in one process on
two threads (each a half of the episodes, as the limit's threads), each in one run with the limit
itself:

1. ``limit``: ``bench_peers.decode_limit`` with two threads;
2. ``decode``: every frame of both cameras once through the shared decoder, in the reader's own
   pool order (``reader/pool.py`` ``pool_order``, a pool of 24: episodes drawn in rounds, each from
   a random frame on, wrapping once), nothing else;
3. ``+ convert``: as 2, each frame converted into RGB straight into a row of a rotating set of 96
   (three batches' worth, so written into memory no cache holds, as a batch's rows);
4. ``+ window``: as 3, and the top frame 3 draws back in the episode (the frame itself at its
   first draws) converted again into a second row, as a sample with the peers benchmark's window
   (``[-0.1, 0.0]``) writes it.

Samples/s (frames of one camera / wall seconds) and each step's ratio to the limit: what the
reader would reach if everything but decoding and converting cost nothing.

    .venv-lerobot/bin/python tools/bench_decode_ceiling.py bench_out/peers/packed [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from bench_peers import TOP, WRIST, decode_limit  # noqa: E402
from bench_refs import first_episodes  # noqa: E402

STEPS = ("decode", "+ convert", "+ window")
#: Pool size of the order decoded in (``bench_peers.py --pool 24``'s).
POOL = 24
#: Frames back the window's top frame is (``[-0.1, 0.0]`` at 30 fps).
BACK = 3


def run(eps: list, step: str) -> float:
    """Samples/s of ``step`` on two threads, each a half of the episodes."""
    import torch

    from lerobot_wds.reader.pool import pool_order
    from lerobot_wds.reader.shared_decoder import open_shared

    def share(k: int) -> int:
        mine = {e: eps[e] for e in range(k, len(eps), 2)}
        decoders = {(e, c): open_shared(bytes(ep.clips[c])) for e, ep in mine.items() for c in (TOP, WRIST)}
        if any(d is None for d in decoders.values()):
            raise SystemExit("a clip the shared decoder does not take: this measures lerobot's AV1 clips only")
        info = {c: next(iter(mine.values())).meta.clips[c] for c in (TOP, WRIST)}
        rows = {c: torch.empty((96, 3, info[c].height, info[c].width), dtype=torch.uint8) for c in (TOP, WRIST)}
        held: dict[int, list] = {}
        n = 0
        episodes = list(mine)
        for p, i, _ in pool_order([mine[e].length for e in episodes], POOL, k):
            e = episodes[p]
            for c in (TOP, WRIST):
                frame = decoders[(e, c)].frame_at(mine[e].meta.clips[c].lead_in + i)
                if step != "decode":
                    frame.convert_into(rows[c][n % 96])
                if step == "+ window" and c == TOP:
                    back = held.setdefault(e, [])
                    back.append(frame)
                    back[0].convert_into(rows[c][(n + 48) % 96])
                    del back[:-BACK]
            n += 1
        return n

    t = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        frames = sum(pool.map(share, [0, 1]))
    return frames / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("packed", help="a packed dataset of lerobot's clips (bench_out/peers/packed)")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    eps = first_episodes(a.packed, 50)
    got: dict[str, list[float]] = {"limit": [], **{s: [] for s in STEPS}}
    for r in range(a.rounds):
        got["limit"].append(decode_limit(a.packed, streams=2)["samples_s"])
        for step in STEPS:
            got[step].append(run(eps, step))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in got.items()), flush=True)
    limit = statistics.median(got["limit"])
    print(f"\nmedians of {a.rounds} rounds, two threads, samples/s (÷ the limit):")
    for k, v in got.items():
        print(f"  {k:10s} {statistics.median(v):6.0f}  ({statistics.median(v) / limit:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
