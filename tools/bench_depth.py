"""Depth maps at 480x640: LeRobotDataset against lerobot-wds, side by side in one run (lerobot env).

Writes (or reuses) a dataset with lerobot 0.6.1's own writer: one depth camera 480x640 recorded in
uint16 millimetres (lerobot's depth defaults: 12-bit log quantization, lossless HEVC, GOP 2), a
6-d state and action; packs it with ``lerobot-wds pack``; then reads single samples at 0 workers
for ``--seconds`` each, in shuffled order, without and with a window on the depth camera
(``[-0.1, 0.0]``): LeRobotDataset (random indices) and ours (``shuffle=True``, default pool).
Then what a frame costs by itself: PyAV decoding the first episode's clip front to back on one
thread, and dequantizing a frame through the table (reader/depth.py).

    .venv-lerobot/bin/python tools/bench_depth.py [--out bench_out/depth] [--episodes 10] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

KEY, HW = "observation.images.depth", (480, 640)


def write(root: Path, episodes: int, seed: int = 0) -> Path:
    """The dataset at ``root`` (written again unless complete)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    done = root.with_suffix(".done")
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    names = [f"j{i}" for i in range(6)]
    features = {KEY: {"dtype": "video", "shape": (*HW, 1), "names": ["height", "width", "channels"],
                      "info": {"is_depth_map": True}},
                "observation.state": {"dtype": "float32", "shape": (6,), "names": names},
                "action": {"dtype": "float32", "shape": (6,), "names": names}}
    ds = LeRobotDataset.create("bench/depth", fps=30, features=features, root=root, streaming_encoding=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HW[0], 0:HW[1]]
    for e in range(episodes):
        base = 600 + 2400 * rng.random() + 3 * xx + 2 * yy  # a tilted floor, millimetres
        for t in range(int(rng.integers(120, 180))):
            cy, cx = 240 + 150 * np.sin(t / 9), 320 + 200 * np.cos(t / 7)
            obj = ((yy - cy) ** 2 + (xx - cx) ** 2 < 60 ** 2) * -400  # a closer disc moving
            depth = base + obj + rng.normal(0, 4, HW)
            state = np.sin(np.arange(6) + t / 20).astype(np.float32)
            ds.add_frame({KEY: depth.clip(1, 9000).astype(np.uint16)[..., None], "observation.state": state,
                          "action": state, "task": "look"})
        ds.save_episode()
        print(f"episode {e} written", flush=True)
    ds.finalize()
    done.touch()
    return root


def rate(samples, seconds: float) -> tuple[float, int]:
    """(samples/s, samples) of an iterator, after one sample of warm-up."""
    next(samples)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(samples)
        n += 1
    return n / (time.perf_counter() - start), n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench_out/depth"))
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot_wds.reader import LeRobotShardDataset

    a.out.mkdir(parents=True, exist_ok=True)
    root = write(a.out / "lerobot", a.episodes)
    packed = a.out / "packed"
    if not (packed / "manifest.json").exists():
        subprocess.run([str(Path(sys.executable).parent / "lerobot-wds"), "pack", str(root), str(packed),
                        "--no-progress"], check=True)
    print(f"{a.episodes} episodes, depth {HW[0]}x{HW[1]}, {sum(f.stat().st_size for f in packed.glob('*.tar')) / 1e6:.1f} "
          f"MB packed; single samples, 0 workers, {a.seconds:g} s each")
    print(f"{'window':>8} {'LeRobotDataset':>15} {'lerobot-wds':>12} {'ratio':>6}")
    for window in (None, {KEY: [-0.1, 0.0]}):
        theirs = LeRobotDataset("bench/depth", root=root, delta_timestamps=window)
        order = np.random.default_rng(0).permutation(len(theirs))
        their_rate, _ = rate((theirs[int(i)] for i in order), a.seconds)
        ours = LeRobotShardDataset(str(packed), delta_timestamps=window)
        our_rate, _ = rate(iter(ours), a.seconds)
        print(f"{'yes' if window else 'no':>8} {their_rate:>15.1f} {our_rate:>12.1f} {our_rate / their_rate:>6.2f}")
    decode_ms, dequantize_ms = frame_costs(packed)
    print(f"one frame: decode {decode_ms:.2f} ms (PyAV, one thread, front to back), dequantize {dequantize_ms:.2f} ms")
    return 0


def frame_costs(packed: Path) -> tuple[float, float]:
    """ms per frame: decoding the first episode's clip front to back, and dequantizing a frame."""
    import tarfile

    import torch

    from lerobot_wds.reader.depth import DepthClipDecoder, DepthQuantization, dequantize

    with tarfile.open(sorted(packed.glob("*.tar"))[0]) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(f"{KEY}.mp4"))
        clip = tar.extractfile(member).read()
    dec = DepthClipDecoder(clip)
    start = time.perf_counter()
    frames = [dec.codes_at(i) for i in range(dec.num_frames)]
    decode = (time.perf_counter() - start) / len(frames)
    table = DepthQuantization().table("mm")
    start = time.perf_counter()
    for codes in frames:
        dequantize(codes, table)
    return decode * 1e3, (time.perf_counter() - start) / len(frames) * 1e3


if __name__ == "__main__":
    os.environ.setdefault("SVT_LOG", "1")
    sys.exit(main())
