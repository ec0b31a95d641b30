"""NVDEC (GPU) against torchcodec on the CPU, decoding a packed dataset's clips as the reader does.

The reader's ``video_decode_device="cuda"`` hands torchcodec's ``VideoDecoder`` the GPU. That needs
torchcodec's CUDA build (on PyPI from 0.14; lerobot 0.6.1 pins one below 0.12, whose PyPI wheels are
CPU-only) and FFmpeg's shared libraries on the GPU machine; ``tools/bench_decode_device.py``
measures that path. This measures NVDEC itself, through
NVIDIA's own PyNvVideoCodec
(``pip install PyNvVideoCodec``; it needs the driver's ``libnvcuvid``), on the same in-memory clips
the reader decodes, in the reader's two access patterns, against torchcodec on the CPU with one
FFmpeg thread per decoder (as the reader decodes):

- ``open``: ms to open a decoder on an episode's clip, get the episode's first frame and let the
  decoder go;
- ``file order``: each episode front to back, 8 frames a call (the decode limit's pattern);
- ``pool order``: one decoder held per episode, frame i of every episode before frame i + 1 of
  any, one frame a call (what the episode pool asks of its held decoders);
- ``file order, T threads``: T episodes decoded at once (NVDEC has several engines; on the CPU
  each thread is a core);
- ``held``: GPU memory one held NVDEC decoder takes (on the CPU: ``tools/bench_frame_costs.py``);
- ``pixels``: NVDEC's RGB against torchcodec's CPU frames (what LeRobotDataset returns), saved
  by a CPU run with ``--save-refs`` and compared by a GPU run with ``--refs``.

Every frame is written into a batch of uint8 ``(C, H, W)`` rows on the decoding device, as the
reader writes its batches (on the CPU with ``cv2.split``, the reader's own ``write_frame``).
frames/s = frames / wall seconds.

lerobot-wds must be installed (``pip install .``; the dev environments have it): the checkout's
``lerobot_wds/`` alone does not hold the reader.

    .venv-lerobot/bin/python tools/bench_gpu_decode.py bench_out/nvdec_h264 --device cpu --save-refs refs_h264.npz
    python3 tools/bench_gpu_decode.py bench_out/nvdec_h264 --device cuda --refs refs_h264.npz --threads 1,2,4,8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench_refs import first_episodes  # tools/, this script's directory

#: Frames a call in file order (the decode limit's range in tools/bench_peers.py).
RANGE = 8
#: Rows of the batch every frame is written into, round robin.
ROWS = 32
#: Episode frames whose pixels are compared (clamped to the episode).
REF_FRAMES = (0, 1, 2, 57, 100)


class Cpu:
    """torchcodec on the CPU, one FFmpeg thread per decoder, frames deinterleaved into rows."""

    name = "cpu (torchcodec, 1 FFmpeg thread a decoder)"

    def __init__(self) -> None:
        import torch
        from torchcodec.decoders import VideoDecoder

        from lerobot_wds.reader.video import write_frame

        torch.set_num_threads(1)
        self.torch, self.VideoDecoder, self.write_frame = torch, VideoDecoder, write_frame

    def open(self, clip: bytes):
        return self.VideoDecoder(clip, num_ffmpeg_threads=1, seek_mode="exact")

    def frames(self, dec, start: int, stop: int) -> list:
        return list(dec.get_frames_in_range(start, stop).data)

    def write(self, frame, row) -> None:
        self.write_frame(frame, row)

    def rows(self, shape: tuple[int, ...]):
        return self.torch.empty((ROWS, *shape), dtype=self.torch.uint8)

    def sync(self) -> None:
        pass

    def held_bytes(self) -> None:
        return None  # freed memory is reused: tools/bench_frame_costs.py measures it in a fresh process


class Nvdec:
    """PyNvVideoCodec's SimpleDecoder on GPU 0, planar RGB output in device memory."""

    name = "cuda (NVDEC through PyNvVideoCodec)"

    def __init__(self) -> None:
        import PyNvVideoCodec as nvc
        import torch

        self.nvc, self.torch = nvc, torch
        torch.cuda.init()

    def open(self, clip: bytes):
        return self.nvc.SimpleDecoder(bytes(clip), gpu_id=0, use_device_memory=True, decoder_cache_size=1,
                                      output_color_type=self.nvc.OutputColorType.RGBP)

    def frames(self, dec, start: int, stop: int) -> list:
        out = dec[start] if stop == start + 1 else dec[start:stop]
        return [self.torch.from_dlpack(f) for f in (out if isinstance(out, list) else [out])]

    def write(self, frame, row) -> None:
        row.copy_(frame.reshape(row.shape), non_blocking=True)

    def rows(self, shape: tuple[int, ...]):
        return self.torch.empty((ROWS, *shape), dtype=self.torch.uint8, device="cuda")

    def sync(self) -> None:
        self.torch.cuda.synchronize()

    def held_bytes(self) -> int:
        free, total = self.torch.cuda.mem_get_info()
        return total - free


def file_order(be, eps: list, cam: str, rows) -> int:
    n = 0
    for ep in eps:
        lead, dec = ep.meta.clips[cam].lead_in, be.open(ep.clips[cam])
        for i in range(0, ep.length, RANGE):
            for f in be.frames(dec, lead + i, lead + min(i + RANGE, ep.length)):
                be.write(f, rows[n % ROWS])
                n += 1
    be.sync()
    return n


def measure(be, eps: list, cam: str, threads: list[int]) -> dict:
    info = eps[0].meta.clips[cam]
    lead = info.lead_in
    dec = be.open(eps[0].clips[cam])
    first = be.frames(dec, lead, lead + 1)[0]
    rows = be.rows((3, info.height, info.width))
    be.write(first, rows[0])
    be.sync()
    del dec
    out: dict = {"frame_shape": list(first.shape), "frame_dtype": str(first.dtype), "frame_device": str(first.device)}

    t = time.perf_counter()
    for ep in eps:
        lead, dec = ep.meta.clips[cam].lead_in, be.open(ep.clips[cam])  # NVDEC's frames live in their decoder
        be.write(be.frames(dec, lead, lead + 1)[0], rows[0])
        be.sync()
        del dec
    out["open_ms"] = (time.perf_counter() - t) / len(eps) * 1e3

    t = time.perf_counter()
    n = file_order(be, eps, cam, rows)
    out["file_order_fps"] = n / (time.perf_counter() - t)

    before = be.held_bytes()
    held = [(be.open(ep.clips[cam]), ep.meta.clips[cam].lead_in, ep.length) for ep in eps]
    for dec, lead, _ in held:
        be.frames(dec, lead, lead + 1)
    be.sync()
    if before is not None:
        out["held_mb"] = (be.held_bytes() - before) / len(held) / 1e6
    t, n = time.perf_counter(), 0
    for i in range(1, max(length for _, _, length in held)):
        for dec, lead, length in held:
            if i < length:
                be.write(be.frames(dec, lead + i, lead + i + 1)[0], rows[n % ROWS])
                n += 1
    be.sync()
    out["pool_order_fps"] = n / (time.perf_counter() - t)
    del held

    for k in threads:
        shares = [eps[j::k] for j in range(k)]
        share_rows = [be.rows(tuple(rows.shape[1:])) for _ in range(k)]
        t = time.perf_counter()
        with ThreadPoolExecutor(k) as pool:
            n = sum(pool.map(lambda j: file_order(be, shares[j], cam, share_rows[j]), range(k)))
        out[f"file_order_{k}_threads_fps"] = n / (time.perf_counter() - t)
    return out


def ref_frames(be, ep, cam: str):
    import numpy as np

    info, dec = ep.meta.clips[cam], be.open(ep.clips[cam])
    picks = sorted({min(i, ep.length - 1) for i in REF_FRAMES})
    rows = be.rows((3, info.height, info.width))
    for row, i in zip(rows, picks):
        be.write(be.frames(dec, info.lead_in + i, info.lead_in + i + 1)[0], row)
        be.sync()
    return picks, rows[:len(picks)].cpu().numpy().copy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("packed", help="a packed dataset (lerobot-wds pack output)")
    ap.add_argument("--device", choices=("cpu", "cuda"), required=True)
    ap.add_argument("--episodes", type=int, default=12)
    ap.add_argument("--threads", default="1,2", help="thread counts for file order at once (default 1,2)")
    ap.add_argument("--save-refs", help="(cpu) save frames of the first episode, every camera, to this .npz")
    ap.add_argument("--refs", help="(cuda) compare against frames saved by --save-refs")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)

    import numpy as np

    be = Cpu() if a.device == "cpu" else Nvdec()
    eps = first_episodes(a.packed, a.episodes)
    cams = list(eps[0].clips)
    threads = [int(k) for k in a.threads.split(",")]
    print(f"{be.name}: {len(eps)} episodes, {sum(ep.length for ep in eps)} frames, cameras {cams}")
    results: dict = {"device": a.device, "episodes": len(eps), "cameras": {}}
    refs, saved = {}, np.load(a.refs) if a.refs else None
    for cam in cams:
        try:
            r = measure(be, eps, cam, threads)
            if a.save_refs:
                picks, refs[cam] = ref_frames(be, eps[0], cam)
                refs[cam + ".frames"] = np.array(picks)
            if saved is not None:
                picks, got = ref_frames(be, eps[0], cam)
                want = saved[cam].astype(np.int16)
                diff = np.abs(got.astype(np.int16) - want)
                r["pixels_vs_cpu"] = {"frames": picks, "max_abs": int(diff.max()), "mean_abs": float(diff.mean()),
                                      "share_differing": float((diff > 0).mean())}
        except Exception:  # report every camera even when one fails
            r = {"error": traceback.format_exc()}
        results["cameras"][cam] = r
        print(cam, json.dumps(r, indent=1))
    if a.save_refs:
        np.savez_compressed(a.save_refs, **refs)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
