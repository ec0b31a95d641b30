"""The reader decoding on the GPU (``video_decode_device="cuda"``) against the CPU, same data, one machine.

Three measurements on packed datasets (e.g. one as lerobot wrote it, AV1, and one packed with
``--codec h264``), each in a fresh process:

1. ``rows``: the reader as training uses it, for each dataset x windows (off / on) x (device,
   DataLoader workers): ``LeRobotShardDataset(batch_size=32, return_uint8=True, seed=0)``,
   DataLoader ``batch_size=None`` (spawn workers, prefetch 4, persistent), every batch moved to
   the GPU (``.to("cuda")``, what a training step does first; GPU-decoded frames are there
   already) and synchronized; the first batch's time from ``iter()``, then ``--warmup`` s, then
   samples/s over ``--seconds`` (epochs restart as needed); peak RSS of the process tree and the
   GPU memory torch allocated at most (NVDEC's own memory is not torch's: see ``held``). A row that
   fails or runs past its time keeps its error in the output.
2. ``pixels``: the first ``--pixel-samples`` samples in file order (``shuffle=False``, no
   windows) decoded on the CPU and on the GPU, compared camera by camera: largest and mean
   absolute difference, share of values that differ. The CPU's are what ``LeRobotDataset[i]``
   returns (tests_lerobot/ checks that).
3. ``held``: what the episode pool asks of the decoders, outside the reader: ``--held`` decoders
   open at once per camera (the default pool of 64 episodes holds 64 per camera; the dataset's
   clips are reused round robin), one frame taken from each, then ``--held-frames`` more from
   each, one frame a call, round robin. Seconds to open and take the first frames, frames/s after,
   memory they hold with the last frame taken from each (GPU: CUDA's free memory before and
   after, so NVDEC's own allocations count; CPU: the process's RSS), one camera a process, and
   torchcodec's CPU fallback status of the first decoder (whether the GPU decoded at all: an
   NVDEC that does not take the codec falls back to the CPU).

Needs torchcodec's CUDA build (PyPI's Linux wheels from 0.14 on; they take torch >= 2.11) and
FFmpeg's shared libraries, and lerobot-wds installed. lerobot 0.6.1 pins torchcodec < 0.12, whose
PyPI wheels are CPU-only, so this runs outside a lerobot environment.

The README's numbers (``--only`` picks measurements, e.g. ``--only rows``):

    .venv-lerobot/bin/python tools/bench_peers_data.py bench_out/gpu --episodes 6
    lerobot-wds pack bench_out/gpu/lerobot bench_out/gpu/packed_av1
    lerobot-wds pack bench_out/gpu/lerobot bench_out/gpu/packed_h264 --codec h264
    python3 tools/bench_decode_device.py bench_out/gpu/packed_h264 bench_out/gpu/packed_av1 \
        --configs cpu:0,cpu:4,cpu:8,cuda:0,cuda:2 --seconds 5 --warmup 2 --timeout 60
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

BATCH = 32


def rows_child(path: str, device: str, nw: int, win: bool, seconds: float, warmup: float) -> dict:
    """One row, in this (fresh) process."""
    import torch
    from torch.utils.data import DataLoader

    from bench_peers import loader_options, measured_batches, windows
    from bench_refs import PeakRSS
    from lerobot_wds.reader import LeRobotShardDataset

    gpu = torch.cuda.is_available()
    with PeakRSS() as rss:
        ds = LeRobotShardDataset(path, delta_timestamps=windows() if win else None, return_uint8=True, seed=0,
                                 batch_size=BATCH, video_decode_device=device)
        loader = DataLoader(ds, batch_size=None, num_workers=nw, **loader_options(nw))
        timing: dict = {}

        def to_gpu(batch: dict) -> dict:  # what a training step does first
            batch = {k: v.to("cuda") if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            torch.cuda.synchronize()
            return batch

        for _ in measured_batches(ds, loader, seconds, warmup, timing, to_gpu if gpu else None):
            pass
        del loader
    return {"samples_s": timing["samples_s"], "first_s": timing["first_s"], "rss_gb": rss.peak / 1e9,
            "gpu_alloc_gb": torch.cuda.max_memory_allocated() / 1e9 if gpu else None}


def pixels_child(path: str, samples: int) -> dict:
    """CPU against GPU decoding of the same samples, camera by camera."""
    import torch

    from lerobot_wds.reader import LeRobotShardDataset

    cpu, gpu = (iter(LeRobotShardDataset(path, shuffle=False, return_uint8=True, video_decode_device=d))
                for d in ("cpu", "cuda"))
    stats: dict[str, dict] = {}
    for _ in range(samples):
        a, b = next(cpu), next(gpu)
        assert int(a["index"]) == int(b["index"]), "the two readers went out of step"
        for key, frame in a.items():
            if not (isinstance(frame, torch.Tensor) and frame.dtype == torch.uint8 and frame.ndim == 3):
                continue
            other = b[key]
            s = stats.setdefault(key, {"max": 0, "sum": 0, "differ": 0, "values": 0, "device": other.device.type,
                                       "shape_equal": True})
            s["shape_equal"] &= tuple(other.shape) == tuple(frame.shape)
            d = (frame.int() - other.cpu().int()).abs()
            s["max"] = max(s["max"], int(d.max()))
            s["sum"] += int(d.sum())
            s["differ"] += int((d > 0).sum())
            s["values"] += d.numel()
    return {k: {"max_abs": s["max"], "mean_abs": s["sum"] / s["values"], "share_differ": s["differ"] / s["values"],
                "gpu_frames_on": s["device"], "shape_equal": s["shape_equal"]} for k, s in stats.items()}


def held_child(path: str, cam: str, held: int, frames: int, device: str) -> dict:
    """``held`` decoders of one camera open at once, as the pool holds them (see the module
    docstring); one camera a process, so that memory one let go of is not counted against another."""
    import os

    import torch
    from torchcodec.decoders import VideoDecoder

    from bench_refs import first_episodes, rss_parts

    eps = first_episodes(path, 10**6)
    cuda = device == "cuda"
    if cuda:
        torch.empty(1, device="cuda")  # the context, before the baseline

    def used() -> int:
        if cuda:
            torch.cuda.synchronize()
            return -torch.cuda.mem_get_info()[0]
        return sum(rss_parts(os.getpid()).values())

    before = used()
    t0 = time.perf_counter()
    decs, got = [], []
    for i in range(held):
        ep = eps[i % len(eps)]
        dec = VideoDecoder(ep.clips[cam], device=device, seek_mode="exact", num_ffmpeg_threads=1)
        got.append(dec.get_frame_at(ep.meta.clips[cam].lead_in).data)
        decs.append((dec, ep))
    if cuda:
        torch.cuda.synchronize()
    opened = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = 0
    for f in range(1, frames + 1):
        for dec, ep in decs:
            if f < ep.length:
                got[n % held] = dec.get_frame_at(ep.meta.clips[cam].lead_in + f).data
                n += 1
    if cuda:
        torch.cuda.synchronize()
    rate = n / (time.perf_counter() - t0)
    held_bytes = used() - before
    fallback = getattr(decs[0][0], "cpu_fallback", None)
    return {"decoders": held, "open_and_first_s": opened, "frames_s": rate, "held_mb": held_bytes / 1e6,
            "frame_device": got[0].device.type, "cpu_fallback": str(fallback) if fallback is not None else None}


def cameras(path: str) -> list[str]:
    from lerobot_wds.reader.storage import Store

    return list(Store(path).read_manifest().video_keys)


def environment() -> dict:
    """What the numbers were measured with."""
    import os

    import torch
    import torchcodec
    from torchcodec._core import get_ffmpeg_library_versions

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"torch": torch.__version__, "torchcodec": torchcodec.__version__, "cpus": os.cpu_count(), "gpu": gpu,
            "ffmpeg": get_ffmpeg_library_versions().get("ffmpeg_version")}


def run_child(args: list[str], timeout: float) -> dict:
    try:
        p = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"ran past {timeout:.0f} s"}
    if p.returncode:
        return {"error": (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1][:500]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("packed", nargs="*", help="packed datasets")
    ap.add_argument("--configs", default="cpu:0,cpu:4,cpu:8,cuda:0,cuda:2",
                    help="device:DataLoader workers, comma-separated")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--pixel-samples", type=int, default=64)
    ap.add_argument("--held", type=int, default=64)
    ap.add_argument("--held-frames", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds a child may run")
    ap.add_argument("--only", default="held,pixels,rows", help="which measurements, comma-separated")
    ap.add_argument("--json", type=Path, help="also write every result here (rewritten after each)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        kind, *rest = a.child
        if kind == "row":
            path, device, nw, win, seconds, warmup = rest
            out = rows_child(path, device, int(nw), win == "1", float(seconds), float(warmup))
        elif kind == "pixels":
            out = pixels_child(rest[0], int(rest[1]))
        elif kind == "held":
            out = held_child(rest[0], rest[1], int(rest[2]), int(rest[3]), rest[4])
        else:
            out = environment()
        print(json.dumps(out))
        return 0
    results = []

    def record(item: dict) -> None:
        results.append(item)
        print(json.dumps(item), flush=True)
        if a.json:
            a.json.write_text(json.dumps(results, indent=1))

    record({"what": "env", **run_child(["env"], a.timeout)})
    configs = [(c.split(":")[0], int(c.split(":")[1])) for c in a.configs.split(",")]
    for path in a.packed:
        name = Path(path).name
        for cam in cameras(path) if "held" in a.only else ():
            for device in ("cpu", "cuda"):
                record({"what": "held", "data": name, "camera": cam, "device": device,
                        **run_child(["held", path, cam, str(a.held), str(a.held_frames), device], a.timeout)})
        if "pixels" in a.only:
            record({"what": "pixels", "data": name, **run_child(["pixels", path, str(a.pixel_samples)], a.timeout)})
        for win in (False, True) if "rows" in a.only else ():
            for device, nw in configs:
                row = run_child(["row", path, device, str(nw), "1" if win else "0", str(a.seconds), str(a.warmup)],
                                a.timeout)
                record({"what": "row", "data": name, "device": device, "workers": nw, "win": win, **row})
    print(table(results))
    return 0


def table(results: list[dict]) -> str:
    """The rows as a markdown table: samples/s (first batch s, peak RSS GB, GPU GB)."""
    rows = [r for r in results if r["what"] == "row"]
    lines = ["| data | win | device | workers | samples/s | first batch, s | peak RSS, GB | torch GPU, GB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['data']} | {r['win']} | {r['device']} | {r['workers']} | error: {r['error']} | | | |")
            continue
        gpu = f"{r['gpu_alloc_gb']:.2f}" if r["gpu_alloc_gb"] is not None else ""
        lines.append(f"| {r['data']} | {r['win']} | {r['device']} | {r['workers']} | {r['samples_s']:.0f} | "
                     f"{r['first_s']:.2f} | {r['rss_gb']:.2f} | {gpu} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
