"""What a decoded frame costs after torchcodec returns it: layout copies and decoder memory.

First, the resident memory importing torchcodec as the reader does adds to a process that has
imported torch, and what a fresh process holds after importing what each reader's processes import
(torch alone; ours with torchcodec, as every decoding process of ours; torchcodec by a plain import,
which imports ``torch._dynamo``; lerobot-lancedb and LeRobotDataset, where installed), and whether
that imported ``torch._dynamo``.

torchcodec hands out ``(C, H, W)`` views of interleaved ``(H, W, C)`` pixels. This times, per
frame of a packed dataset's camera (one thread, as in a DataLoader worker):

- ``stack views``: DataLoader's collate (``torch.stack``) of 32 such views, per frame;
- ``torch contiguous`` / ``numpy copy`` / ``cv2.split``: making one view contiguous ``(C, H, W)``;
- ``stack contiguous``: collate of 32 contiguous frames, per frame;
- a batch of 32 two-frame windows stacked into fresh memory (as collate does) and into memory
  reused from the last batch;
- a batch of 32 frames as a DataLoader worker's collate makes it: into a new shared-memory
  segment (``torch.UntypedStorage._new_shared``, what ``default_collate`` allocates in a worker:
  created, filled, freed), against a plain copy into reused memory: the transport cost every
  reader pays per batch at ``num_workers > 0``, whatever it decodes;

the resident memory one open ``VideoDecoder`` holds after decoding 8 frames, with 1 and 2 FFmpeg
threads (50 decoders opened on 50 episodes' clips, RssAnon difference / 50); and what the pool
would pay per draw if it let an episode's decoder go between draws instead of holding it: opening
a decoder on the clip (``exact`` and ``approximate`` seek modes) and decoding the frame the pool
asks for next (frames 10 and 11, one of each GOP-2 pair), against the next frame from a held
decoder. Numbers quoted in reader/video.py.

Last, the reader's decoder shared by every episode (``reader/shared_decoder.py``): one PyAV codec
context per camera fed every episode's packets in the pool's order, two frames a turn from a
keyframe (at GOP 2 the pair's second frame refers only to the first), the second kept decoded for
the episode's next turn. It checks that its pixels equal torchcodec's (every frame), and prints ms
a frame against held torchcodec decoders in the same order, the resident memory per episode of
each, and the ms ``open_shared`` takes to open a clip (to find its packets). Then what converting a
decoded 4:2:0 frame to RGB costs (``--conversions``: only that, one thread): ``rgb24`` then
``cv2.split`` into a reused ``(3, H, W)`` row (what a batch's row got before ``PlanarFrame``),
swscale's planar ``gbrp`` as a PyAV frame then three plane copies into the row (``PlanarFrame``
before it converted into the row itself), and swscale converting straight into the row
(``PlanarFrame.convert_into``: the reader's), with the largest difference between ``rgb24`` and
either ``gbrp`` row's pixels over every frame; ``rgb24`` alone; and the first ``gbrp`` conversion
of frames never converted before (decoded anew for each repetition), through each frame's own
reformatter (PyAV's ``VideoFrame.reformat``) and through one reformatter reused for every frame
(the reader's, one a thread).

    .venv/bin/python tools/bench_frame_costs.py bench_out/peers/packed --camera observation.images.top
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def status_bytes(field: str) -> int:
    """A memory field of this process's /proc status (``VmRSS``, ``RssAnon``), in bytes."""
    with open(f"/proc/{os.getpid()}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


#: What a reader's decoding process imports, per reader (a fresh interpreter each).
READER_IMPORTS = {
    "torch alone": "import torch",
    "lerobot-wds reader + torchcodec": "import torch, lerobot_wds.reader; "
                                       "lerobot_wds.reader.torchcodec_import.video_decoder_class()",
    "torchcodec, plain import": "import torch, torchcodec.decoders",
    "lerobot-lancedb": "import lerobot_lancedb",
    "LeRobotDataset": "import lerobot.datasets.lerobot_dataset",
}


def import_footprints() -> None:
    """Print the peak resident memory of a fresh interpreter after each reader's imports."""
    import subprocess

    # VmHWM, not ru_maxrss: a forked child's ru_maxrss starts at its parent's resident size.
    probe = ("import sys; {}; print(next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') "
             "if l.startswith('VmHWM:')), 'torch._dynamo' in sys.modules)")
    for name, statements in READER_IMPORTS.items():
        r = subprocess.run([sys.executable, "-c", probe.format(statements)], capture_output=True, text=True, cwd=REPO)
        if r.returncode:
            print(f"imports of {name}: not importable here ({r.stderr.strip().splitlines()[-1]})")
            continue
        rss, dynamo = r.stdout.split()
        print(f"imports of {name} ({statements}): {int(rss) / 1e9:.2f} GB peak resident, torch._dynamo imported: {dynamo}")


def per_frame_ms(fn, frames, reps: int) -> float:
    fn(frames)
    t = time.perf_counter()
    for _ in range(reps):
        fn(frames)
    return (time.perf_counter() - t) / reps / len(frames) * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("packed", help="a packed dataset (lerobot-wds pack output)")
    ap.add_argument("--camera", required=True)
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--conversions", action="store_true", help="only the 4:2:0 → RGB conversion costs (the last part)")
    a = ap.parse_args(argv)

    import cv2
    import numpy as np
    import torch

    from lerobot_wds.reader.torchcodec_import import video_decoder_class

    before = status_bytes("VmRSS")
    VideoDecoder = video_decoder_class()
    if not a.conversions:
        print(f"importing torchcodec as the reader does (torch already imported): "
              f"+{(status_bytes('VmRSS') - before) / 1e6:.0f} MB resident")
        import_footprints()

    from lerobot_wds.reader.episodes import EpisodeLoader
    from lerobot_wds.reader.storage import Store
    from lerobot_wds.reader.video import planar

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    store = Store(a.packed)
    m = store.read_manifest()
    where = [(s.name, e) for s in m.shards for e in s.episodes][: a.episodes]
    loader = EpisodeLoader(store, where, list(range(len(where))), [a.camera], [], "raise")
    eps = [loader.get(p) for p in range(len(where))]
    if a.conversions:
        conversions(eps, a.camera, a.reps)
        return 0

    ep = eps[0]
    lead = ep.meta.clips[a.camera].lead_in
    dec = VideoDecoder(ep.clips[a.camera], seek_mode="exact")
    views = [dec.get_frame_at(lead + i).data for i in range(32)]
    flat = [planar(v) for v in views]
    assert all(torch.equal(f, v) and f.is_contiguous() for f, v in zip(flat, views))
    shape = tuple(views[0].shape)
    print(f"{a.camera}: frames {shape}, torchcodec strides {views[0].stride()} (contiguous: {views[0].is_contiguous()})")
    rows = {
        "stack views (collate)": lambda fs: torch.stack(fs),
        "torch contiguous": lambda fs: [f.contiguous() for f in fs],
        "numpy copy": lambda fs: [np.ascontiguousarray(f.numpy()) for f in fs],
        "cv2.split (planar)": lambda fs: [planar(f) for f in fs],
        "stack contiguous (collate)": lambda fs: torch.stack(flat),
    }
    for name, fn in rows.items():
        print(f"  {name:28s} {per_frame_ms(fn, views, a.reps):.3f} ms/frame")
    # A batch of 32 two-frame windows: collate's output is fresh memory every batch; above glibc's
    # largest mmap threshold (32 MB) every batch is new pages from the kernel, not reused heap.
    windows = [torch.stack(flat[i % 31:i % 31 + 2]) for i in range(32)]
    reused = torch.empty((32, *windows[0].shape), dtype=windows[0].dtype)
    batch_mb = reused.numel() / 1e6
    stacks = {"fresh (collate)": lambda ws: torch.stack(ws),
              "into reused memory": lambda ws: torch.stack(ws, out=reused)}
    for name, fn in stacks.items():
        print(f"  stack 32 2-frame windows ({batch_mb:.0f} MB), {name:20s} {per_frame_ms(fn, windows, a.reps) * 32:.1f} ms/batch")

    # A worker's batch: default_collate allocates it in a new shared-memory segment (so the batch
    # crosses to the training process without a copy); the segment is created, faulted in page by
    # page while filled, and freed when the training process drops the batch.
    out = torch.empty((32, *shape), dtype=torch.uint8)
    phases = {"create": 0.0, "fill": 0.0, "free": 0.0}
    for _ in range(a.reps):
        t0 = time.perf_counter()
        storage = torch.UntypedStorage._new_shared(out.numel())
        t1 = time.perf_counter()
        shared = torch.empty(0, dtype=torch.uint8).set_(storage, 0, out.shape)
        torch.stack(flat, out=shared)
        t2 = time.perf_counter()
        del shared, storage
        t3 = time.perf_counter()
        for k, v in zip(phases, (t1 - t0, t2 - t1, t3 - t2)):
            phases[k] += v / a.reps * 1e3
    plain = per_frame_ms(lambda fs: torch.stack(fs, out=out), flat, a.reps) * 32
    print(f"  a worker's batch of 32 frames ({out.numel() / 1e6:.0f} MB) in new shared memory: "
          + ", ".join(f"{k} {v:.1f}" for k, v in phases.items())
          + f" = {sum(phases.values()):.1f} ms/batch; plain copy into reused memory {plain:.1f} ms/batch")

    del dec, views, flat
    for threads in (1, 2):
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed heap back to the OS, so the baseline is honest
        base = status_bytes("RssAnon")
        decoders = []
        for ep in eps:
            d = VideoDecoder(ep.clips[a.camera], seek_mode="exact", num_ffmpeg_threads=threads)
            lead = ep.meta.clips[a.camera].lead_in
            for i in range(min(8, ep.length)):  # a few frames in, as the pool holds them
                d.get_frame_at(lead + i)
            decoders.append(d)
        gc.collect()
        print(f"  memory of one open decoder, {threads} thread(s), after 8 frames: "
              f"{(status_bytes('RssAnon') - base) / len(decoders) / 1e6:.2f} MB (mean of {len(decoders)})")
        del decoders, d
    reopen_costs(VideoDecoder, eps, a.camera)
    shared_decoder(VideoDecoder, eps, a.camera)
    conversions(eps, a.camera, a.reps)
    return 0


def shared_decoder(VideoDecoder, eps: list, camera: str, frames: int = 15) -> None:
    """Print the reader's shared decoder (see the module docstring) against held decoders. An odd
    number of ``frames``: each episode ends holding its next frame decoded, as after a keyframe's draw."""
    import av
    import torch

    from lerobot_wds.reader.shared_decoder import open_shared

    eps = [ep for ep in eps if ep.meta.clips[camera].num_frames >= frames]

    def shared_turns(check: list | None = None) -> list:
        """Every episode's first ``frames`` frames in the pool's order; returns what the episodes hold."""
        decoders = [open_shared(ep.clips[camera]) for ep in eps]
        if None in decoders:
            raise SystemExit(f"camera {camera!r}: some clips do not take the shared path (reader/shared_decoder.py)")
        refs = [VideoDecoder(ep.clips[camera], seek_mode="exact") for ep in eps] if check is not None else []
        for i in range(frames):
            for e, d in enumerate(decoders):
                got = d.frame_at(i).tensor()
                if check is not None:
                    check.append(torch.equal(got, refs[e].get_frame_at(i).data))
        return decoders

    def held_turns() -> list:
        """The same frames from held torchcodec decoders, one a turn, in the pool's order."""
        decoders = [VideoDecoder(ep.clips[camera], seek_mode="exact", num_ffmpeg_threads=1) for ep in eps]
        for i in range(frames):
            for d in decoders:
                d.get_frame_at(i)
        return decoders

    rows = {}
    for name, run in (("held", held_turns), ("shared", shared_turns)):
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        base = status_bytes("RssAnon")
        t = time.perf_counter()
        holds = run()
        ms = (time.perf_counter() - t) / (frames * len(eps)) * 1e3
        gc.collect()
        rows[name] = (ms, (status_bytes("RssAnon") - base) / len(eps) / 1e6)
        del holds
    opens = []
    for _ in range(3):
        t = time.perf_counter()
        for ep in eps:
            open_shared(ep.clips[camera])
        opens.append((time.perf_counter() - t) / len(eps) * 1e3)
    check: list[bool] = []
    shared_turns(check)  # after the measured turns: their contexts (and picture pools) were new
    print(f"  the reader's shared decoder over {len(eps)} episodes (PyAV {av.__version__}): "
          f"pixels equal torchcodec's in {sum(check)} of {len(check)} frames; "
          f"{rows['shared'][0]:.2f} ms a frame, two a turn, against {rows['held'][0]:.2f} held, one a turn; "
          f"resident per episode {rows['shared'][1]:.2f} MB (packet places, kept frame) against "
          f"{rows['held'][1]:.2f} MB (held decoder); opening a clip (open_shared: its packets' places) "
          f"{min(opens):.2f} ms, the best of 3 passes")


def reopen_costs(VideoDecoder, eps: list, camera: str) -> None:
    """Print ms per frame: the next frame from a held decoder, against a decoder opened for it."""
    eps = [ep for ep in eps if ep.length > 12]
    held = 0.0
    for ep in eps:
        lead = ep.meta.clips[camera].lead_in
        dec = VideoDecoder(ep.clips[camera], seek_mode="exact", num_ffmpeg_threads=1)
        dec.get_frame_at(lead)
        t = time.perf_counter()
        for i in range(1, 12):
            dec.get_frame_at(lead + i)
        held += (time.perf_counter() - t) / 11
    print(f"  next frame, held decoder: {held / len(eps) * 1e3:.2f} ms")
    for mode in ("exact", "approximate"):
        opened = decoded = 0.0
        for ep in eps:
            lead = ep.meta.clips[camera].lead_in
            for i in (10, 11):
                t0 = time.perf_counter()
                dec = VideoDecoder(ep.clips[camera], seek_mode=mode, num_ffmpeg_threads=1)
                t1 = time.perf_counter()
                dec.get_frame_at(lead + i)
                t2 = time.perf_counter()
                opened, decoded = opened + (t1 - t0) / 2, decoded + (t2 - t1) / 2
        n = len(eps)
        print(f"  next frame, decoder opened for it ({mode}): open {opened / n * 1e3:.2f} + decode "
              f"{decoded / n * 1e3:.2f} = {(opened + decoded) / n * 1e3:.2f} ms")


def conversions(eps: list, camera: str, reps: int, max_frames: int = 300) -> None:
    """Print ms a frame of converting decoded 4:2:0 frames (PyAV, one thread) to RGB, as the module
    docstring says, timed over the first ``max_frames`` frames of the episodes' clips; the pixels of
    the two ways of writing a row compared over every frame."""
    import io

    import av
    import cv2
    import numpy as np
    import torch

    from lerobot_wds.reader.shared_decoder import PlanarFrame, one_thread_options
    from lerobot_wds.reader.video import write_frame

    one = one_thread_options()

    def rgb24(fs: list, out: np.ndarray) -> None:
        for f in fs:
            f.to_ndarray(format="rgb24", **one)

    def rgb24_split(fs: list, out: np.ndarray) -> None:
        for f in fs:
            cv2.split(f.to_ndarray(format="rgb24", **one), list(out))

    def gbrp_copies(fs: list, out: np.ndarray) -> None:  # PyAV's converted frame, its planes copied in
        for f in fs:
            for dst, src in zip(out, PlanarFrame(f).channels()):
                np.copyto(dst, src)

    def gbrp_into_row(fs: list, out: np.ndarray) -> None:  # the reader's own (reader/shared_decoder.py)
        rows = torch.from_numpy(out)
        for f in fs:
            write_frame(PlanarFrame(f), rows)

    timed, total, worst = [], 0, 0
    for ep in eps:
        with av.open(io.BytesIO(ep.clips[camera])) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1
            for f in container.decode(stream):
                row, other = (torch.empty((3, f.height, f.width), dtype=torch.uint8).numpy() for _ in range(2))
                rgb24_split([f], row)
                for gbrp in (gbrp_copies, gbrp_into_row):
                    gbrp([f], other)
                    worst = max(worst, int(np.abs(row.astype(np.int16) - other).max()))
                total += 1
                if len(timed) < max_frames:
                    timed.append(f)
    # rows as the reader's are: torch's memory, 64-byte aligned (numpy's large arrays are not)
    out = torch.empty((3, timed[0].height, timed[0].width), dtype=torch.uint8).numpy()
    times = {name: per_frame_ms(lambda fs: fn(fs, out), timed, reps) for name, fn in
             (("rgb24", rgb24), ("rgb24 + cv2.split", rgb24_split), ("gbrp + 3 copies", gbrp_copies),
              ("gbrp by swscale into the row", gbrp_into_row))}
    print(f"  4:2:0 -> RGB (PyAV {av.__version__}, {len(timed)} frames): "
          + ", ".join(f"{name} {ms:.3f} ms" for name, ms in times.items())
          + f"; largest pixel difference rgb24 + cv2.split vs either gbrp over all {total} frames: {worst}")

    def fresh_frames() -> list:  # the timed frames decoded anew: never converted
        fs = []
        for ep in eps:
            with av.open(io.BytesIO(ep.clips[camera])) as container:
                container.streams.video[0].thread_count = 1
                fs += [f for f, _ in zip(container.decode(video=0), range(len(timed) - len(fs)))]
            if len(fs) >= len(timed):
                return fs
        return fs

    reused = av.video.reformatter.VideoReformatter()
    ways = {"each frame's own reformatter": lambda f: f.reformat(format="gbrp", **one),
            "one reformatter reused": lambda f: reused.reformat(f, format="gbrp", **one)}
    firsts: dict[str, list[float]] = {name: [] for name in ways}
    passes = max(1, reps // 4)
    for _ in range(passes):
        for name, convert in ways.items():
            fs = fresh_frames()
            t = time.perf_counter()
            for f in fs:
                convert(f)
            firsts[name].append((time.perf_counter() - t) / len(fs) * 1e3)
    print(f"  first gbrp conversion of a frame, median of {passes} passes: "
          + ", ".join(f"{name} {sorted(ms)[len(ms) // 2]:.3f} ms" for name, ms in firsts.items()))


if __name__ == "__main__":
    raise SystemExit(main())
