"""From the decode limit to the batched reader, one step at a time: where a sample's CPU goes.

``tools/bench_peers.py`` compares the reader with the decode limit: bare torchcodec decoding each
needed frame once, each episode front to back in ranges of 8 frames. The batched reader differs
from it in four ways, and this measures each on its own, in one process on one thread, as CPU
milliseconds per sample (``time.process_time``; not wall time, which this shared machine skews):

1. ``limit``: the decode limit's loop: each of ``--episodes`` episodes' first ``--frames`` frames,
   top then wrist camera, each front to back in ranges of 8 frames;
2. ``one a call``: the same frames in the same order, one frame a call (``get_frame_at``, as the
   reader asks for them): what asking frame by frame costs, with each decoder's state warm;
3. ``interleaved``: the same frames in the pool's order: one frame a call, frame i of every
   episode before frame i + 1 of any (each decoder's state cold by its next turn);
4. ``+ writes``: as 3, and every frame the sample carries written into its row of a batch of 32,
   deinterleaved as the batched reader writes it (``reader/video.py`` ``write_frame``); with
   ``--windows`` the top camera's window frame (3 frames back, held since its own decode) too;
5. ``reader``: the batched reader itself (``LeRobotShardDataset(batch_size=32)``,
   ``return_uint8=True``) on one decode thread (``reader/dataset.py`` ``MAIN_DECODE_STREAMS``
   set to 1 for this process), over ``--batches`` batches after 20 of warm-up: what it adds to 4
   is its per-sample work in Python (the sample's other keys, the pool, the batch) and loading
   the episodes that enter the pool meanwhile (reading, parsing, opening their decoders).

Steps 1-5 are repeated ``--rounds`` times, interleaved; the medians are printed with each step's
ratio to the limit. ``--profile``: then step 4 once more under cProfile, printing where its own
time went (torchcodec's decoding calls, the writes into rows, the rest).

    .venv-lerobot/bin/python tools/bench_decode_gap.py bench_out/peers/packed [--windows] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from bench_peers import BATCH, TOP, WRIST, windows  # noqa: E402

#: Frames back of the top camera's window frame in ``bench_peers.windows()`` (-0.1 s at 30 fps).
BACK = 3


def open_decoders(eps: list, VideoDecoder) -> list[list[tuple[object, int]]]:
    """Per episode, (decoder, lead-in) of the top and the wrist camera, one FFmpeg thread each."""
    return [[(VideoDecoder(ep.clips[cam], num_ffmpeg_threads=1, seek_mode="exact"), ep.meta.clips[cam].lead_in)
             for cam in (TOP, WRIST)] for ep in eps]


def limit_ms(eps: list, frames: int, per_call: int = 8) -> float:
    """Steps 1 (``per_call=8``: ranges) and 2 (``per_call=1``: ``get_frame_at``)."""
    from torchcodec.decoders import VideoDecoder

    decoders = open_decoders(eps, VideoDecoder)
    t = time.process_time()
    for row in decoders:
        for dec, lead in row:
            for i in range(0, frames, per_call):
                if per_call == 1:
                    dec.get_frame_at(lead + i)
                else:
                    dec.get_frames_in_range(lead + i, lead + min(i + per_call, frames))
    return (time.process_time() - t) / (len(eps) * frames) * 1e3


def interleaved_ms(eps: list, frames: int, write: bool, win: bool) -> float:
    import torch
    from torchcodec.decoders import VideoDecoder

    from lerobot_wds.reader.video import write_frame

    decoders = open_decoders(eps, VideoDecoder)
    top = (BATCH, 2 if win else 1, 3, *decoders[0][0][0].get_frame_at(0).data.shape[1:])
    wrist = (BATCH, 3, *decoders[0][1][0].get_frame_at(0).data.shape[1:])
    batches = [(torch.empty(top, dtype=torch.uint8), torch.empty(wrist, dtype=torch.uint8)) for _ in range(2)]
    held: list[list] = [[] for _ in eps]  # per episode, the top camera's last BACK + 1 frames
    n = 0
    t = time.process_time()
    for i in range(frames):
        for k, ((top_dec, top_lead), (wrist_dec, wrist_lead)) in enumerate(decoders):
            frame = top_dec.get_frame_at(top_lead + i).data
            small = wrist_dec.get_frame_at(wrist_lead + i).data
            if write:
                top_rows, wrist_rows = batches[(n // BATCH) % 2]
                row = n % BATCH
                write_frame(frame, top_rows[row, -1])
                write_frame(small, wrist_rows[row])
                if win:
                    held[k] = [*held[k][-BACK:], frame]
                    write_frame(held[k][0], top_rows[row, 0])
            n += 1
    return (time.process_time() - t) / n * 1e3


def reader_ms(packed: str, win: bool, batches: int, profile: cProfile.Profile | None = None) -> float:
    import lerobot_wds.reader.dataset as dataset
    from lerobot_wds.reader import LeRobotShardDataset

    dataset.MAIN_DECODE_STREAMS = 1
    ds = LeRobotShardDataset(packed, delta_timestamps=windows() if win else None, return_uint8=True, seed=0,
                             batch_size=BATCH)
    it = iter(ds)
    for _ in range(20):
        next(it)
    n = 0
    t = time.process_time()
    with profile or nullcontext():
        for _ in range(batches):
            n += len(next(it)["index"])
    return (time.process_time() - t) / n * 1e3


def print_profile(profile: cProfile.Profile, top: int = 8) -> None:
    """The functions the reader spent its own time in (cProfile's tottime), as shares of the total."""
    rows = sorted(((tt, nc, func) for func, (_cc, nc, tt, _ct, _callers) in pstats.Stats(profile).stats.items()),
                  reverse=True)
    total = sum(tt for tt, _, _ in rows)
    print(f"reader under cProfile ({total:.2f} s, profiling overhead included), own time by function:")
    for tt, nc, (path, line, name) in rows[:top]:
        where = name if path == "~" else f"{Path(path).name}:{line} {name}"
        print(f"  {tt / total:6.1%}  {nc:7d} calls  {where}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("packed", help="a packed dataset with the cameras of tools/bench_peers.py")
    ap.add_argument("--windows", action="store_true", help="samples carry the top camera at [-0.1, 0]")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--frames", type=int, default=64, help="frames of each episode (from its first)")
    ap.add_argument("--batches", type=int, default=60, help="reader batches measured")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="then the reader step once more under cProfile")
    a = ap.parse_args(argv)

    import torch

    from bench_refs import first_episodes

    torch.set_num_threads(1)
    eps = first_episodes(a.packed, a.episodes)
    frames = min(a.frames, *(ep.length for ep in eps))
    steps = {
        "limit": lambda: limit_ms(eps, frames),
        "one a call": lambda: limit_ms(eps, frames, per_call=1),
        "interleaved": lambda: interleaved_ms(eps, frames, False, a.windows),
        "+ writes": lambda: interleaved_ms(eps, frames, True, a.windows),
        "reader": lambda: reader_ms(a.packed, a.windows, a.batches),
    }
    got: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(a.rounds):
        for name, step in steps.items():
            got[name].append(step())
        print(f"round {r + 1}: " + ", ".join(f"{name} {v[-1]:.3f}" for name, v in got.items()), flush=True)
    limit = statistics.median(got["limit"])
    print(f"{len(eps)} episodes x {frames} frames, windows {a.windows}; CPU ms per sample, one thread, "
          f"median of {a.rounds} rounds (÷ limit = the share of the decode limit it reaches):")
    for name, v in got.items():
        ms = statistics.median(v)
        print(f"  {name:12s} {ms:.3f} ms   limit ÷ this {limit / ms:.2f}")
    if a.profile:
        profile = cProfile.Profile()
        reader_ms(a.packed, a.windows, a.batches, profile)
        print_profile(profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
