"""Does PyAV's RGB equal torchcodec's, whatever colour a clip is tagged with? (A shared decoder's risk.)

``tools/bench_frame_costs.py`` measures a decoder shared by every episode, built on PyAV: its pixels
equal torchcodec's on lerobot's untagged clips. The reader's frames must equal ``LeRobotDataset``'s,
which come from torchcodec, for clips tagged with any colour matrix and range too. This re-encodes
the first frames of a video (FFmpeg's command line, libx264, GOP 2) under each tag below, decodes
each clip with both, and prints the largest difference per tag (0: equal, every pixel): PyAV's
``rgb24``, and the planar RGB the reader makes from swscale's ``gbrp``
(``reader/shared_decoder.py`` ``PlanarFrame``).

    .venv-lerobot/bin/python tools/check_pyav_colour.py bench_out/peers/lerobot/videos/observation.images.top/chunk-000/file-000.mp4
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

#: (colour matrix, primaries, transfer, range) as FFmpeg names them.
TAGS = [
    ("unspecified", None, None, None),
    ("smpte170m", "smpte170m", "smpte170m", "tv"),
    ("bt470bg", "bt470bg", "gamma28", "pc"),
    ("bt709", "bt709", "bt709", "tv"),
    ("bt709", "bt709", "bt709", "pc"),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("--frames", type=int, default=40)
    a = ap.parse_args(argv)

    import av
    import numpy as np
    import torchcodec
    from torchcodec.decoders import VideoDecoder

    from lerobot_wds.reader.shared_decoder import PlanarFrame

    print(f"PyAV {av.__version__} against torchcodec {torchcodec.__version__}, {a.frames} frames each")
    with tempfile.TemporaryDirectory() as tmp:
        for matrix, primaries, transfer, rng in TAGS:
            clip = Path(tmp) / f"{matrix}_{rng}.mp4"
            tags = [] if primaries is None else ["-colorspace", matrix, "-color_primaries", primaries,
                                                 "-color_trc", transfer, "-color_range", rng]
            subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", a.video, "-frames:v", str(a.frames),
                            "-c:v", "libx264", "-g", "2", "-bf", "0", "-pix_fmt", "yuv420p", *tags, str(clip)],
                           check=True)
            ref = VideoDecoder(str(clip), seek_mode="exact").get_frames_in_range(0, a.frames).data
            with av.open(str(clip)) as c:
                frames = list(c.decode(video=0))[: a.frames]
            rgb24 = np.stack([f.to_ndarray(format="rgb24") for f in frames]).transpose(0, 3, 1, 2)
            planes = np.stack([PlanarFrame(f).tensor().numpy() for f in frames])
            want = ref.numpy().astype(np.int16)
            for name, ours in (("rgb24", rgb24), ("PlanarFrame", planes)):
                diff = np.abs(ours.astype(np.int16) - want)
                print(f"  {matrix:12s} range {rng or 'unspecified':12s} {name:11s} largest difference "
                      f"{int(diff.max()):3d}, {(diff > 0).mean() * 100:5.1f} % of values differ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
