"""What a reading process's memory is made of: the pool's parts and glibc's heap, batch by batch.

Builds batches of 32 (``return_uint8``, the batched reader) in this process, as a DataLoader
worker would (``--one-thread``: one decoding thread, as in a worker; without it, the training
process's two), and prints every ``--every`` batches the process's anonymous resident memory and
glibc's heap (``mallinfo2``: in use, free, mapped on their own). At the end: what the pool's
episodes hold (decoded frames kept for windows, frames kept by the shared decoder, clip bytes),
the largest classes of free heap pieces (``malloc_info``), and what ``malloc_trim`` gives back.
glibc only (Linux).

    .venv-lerobot/bin/python tools/bench_pool_memory.py bench_out/peers200w/packed --one-thread --windows
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def anon_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:")) / 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("packed")
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--windows", action="store_true", help="bench_peers.py's windows")
    ap.add_argument("--one-thread", action="store_true", help="decode on one thread, as a DataLoader worker")
    a = ap.parse_args(argv)

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    import lerobot_wds.reader.dataset as dataset_module
    from bench_peers import windows
    from lerobot_wds.reader import LeRobotShardDataset
    from lerobot_wds.reader.shared_decoder import SharedClipDecoder
    from lerobot_wds.reader.video import EpisodeVideo

    if a.one_thread:
        dataset_module.MAIN_DECODE_STREAMS = 1
    print(f"after imports: {anon_mb():.0f} MB anonymous resident")
    ds = LeRobotShardDataset(a.packed, delta_timestamps=windows() if a.windows else None, return_uint8=True,
                             seed=0, batch_size=32)
    it = iter(ds)
    t0 = time.perf_counter()
    for n in range(a.batches):
        batch = next(it)
        if n % a.every == 0 or n == a.batches - 1:
            m = libc.mallinfo2()
            print(f"batch {n:4d}: {anon_mb():5.0f} MB; heap in use {m.uordblks / 1e6:4.0f}, "
                  f"free {m.fordblks / 1e6:4.0f}, mapped on their own {m.hblkhd / 1e6:4.0f} MB; "
                  f"{n * 32 / (time.perf_counter() - t0):.0f} samples/s", flush=True)
    del batch
    gc.collect()
    with warnings.catch_warnings():  # isinstance on every object wakes some modules' deprecation warnings
        warnings.simplefilter("ignore")
        videos = [o for o in gc.get_objects() if isinstance(o, EpisodeVideo)]
    held = [t for v in videos for d in v._frames.values() for t in d.values()]
    kept = [d._kept[1] for v in videos for d in v._decoders.values() if isinstance(d, SharedClipDecoder) and d._kept]
    clips = sum(len(c) for v in videos for c in v.episode.clips.values())
    # a decoded frame (PyAV), or an RGB tensor where the tool runs at a commit that kept those
    kept_mb = sum(sum(p.buffer_size for p in f.planes) if hasattr(f, "planes") else f.untyped_storage().nbytes()
                  for f in kept) / 1e6
    # an RGB tensor, or the shared decoder's frame (reader/shared_decoder.py PlanarFrame: its ``nbytes``)
    held_mb = sum(t.nbytes for t in held) / 1e6
    print(f"{len(videos)} pool episodes hold {held_mb:.0f} MB of "
          f"decoded frames for windows ({len(held)} frames), {kept_mb:.0f} MB of frames the shared decoder kept "
          f"({len(kept)}), {clips / 1e6:.0f} MB of clips")
    with tempfile.NamedTemporaryFile(suffix=".xml") as out:
        libc.fopen.restype = ctypes.c_void_p
        f = libc.fopen(out.name.encode(), b"w")
        libc.malloc_info(0, ctypes.c_void_p(f))
        libc.fclose(ctypes.c_void_p(f))
        xml = Path(out.name).read_text()
    free_piece = r'<size from="(\d+)" to="(\d+)" total="(\d+)" count="(\d+)"/>'
    pieces = [tuple(map(int, m)) for m in re.findall(free_piece, xml)]
    for lo, hi, total, count in sorted(pieces, key=lambda p: -p[2])[:4]:
        print(f"  free heap pieces of {lo:,}..{hi:,} bytes: {total / 1e6:.1f} MB in {count}")
    before = anon_mb()
    libc.malloc_trim(0)
    print(f"malloc_trim: {before:.0f} -> {anon_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
