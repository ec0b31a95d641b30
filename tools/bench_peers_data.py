"""Write the bench dataset of issue 12 with lerobot 0.6.1's own writer (run in the lerobot env).

50 episodes, ~13.2k frames at 30 fps, ``observation.images.top`` 480x640 and
``observation.images.wrist`` 240x320 as video (lerobot's default encoder: AV1, GOP 2),
``observation.state``/``action`` float32 (6,). Content is synthetic but not trivially
compressible: a per-episode static scene, a moving disc and sensor noise.

    python tools/bench_peers_data.py OUT_DIR [--episodes 50]
"""

from __future__ import annotations

import argparse
import os
import shutil

import numpy as np

TOP, WRIST = (480, 640), (240, 320)


def _scene(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    small = rng.integers(0, 255, (h // 40 + 1, w // 40 + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, 40, 0), 40, 1)[:h, :w].astype(np.int16)


def _frame(scene: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
    h, w = scene.shape[:2]
    img = scene.copy()
    cy, cx = int(h / 2 + h / 3 * np.sin(t / 7)), int(w / 2 + w / 3 * np.cos(t / 5))
    r = max(h // 10, 4)
    img[max(cy - r, 0):cy + r, max(cx - r, 0):cx + r] = (255, 40, 40)
    img += rng.integers(-3, 4, (h // 8, w // 8, 1), dtype=np.int16).repeat(8, 0).repeat(8, 1)
    return np.clip(img, 0, 255).astype(np.uint8)


def write(out: str, episodes: int = 50, seed: int = 0) -> str:
    """Write the dataset under ``out`` (replaced if incomplete); returns its root."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = os.path.join(out, "lerobot")
    if os.path.exists(os.path.join(root, "meta", "info.json")) and os.path.exists(os.path.join(out, "lerobot.done")):
        return root
    shutil.rmtree(root, ignore_errors=True)
    names = [f"j{i}" for i in range(6)]
    features = {
        "observation.images.top": {"dtype": "video", "shape": (*TOP, 3), "names": ["height", "width", "channels"]},
        "observation.images.wrist": {"dtype": "video", "shape": (*WRIST, 3), "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (6,), "names": names},
        "action": {"dtype": "float32", "shape": (6,), "names": names},
    }
    ds = LeRobotDataset.create("bench/peers", fps=30, features=features, root=root, robot_type="synthetic",
                               streaming_encoding=True)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(200, 330, episodes)
    for e, n in enumerate(lengths):
        top, wrist = _scene(rng, TOP), _scene(rng, WRIST)
        phase = rng.uniform(0, 6.28, 6)
        for t in range(int(n)):
            state = np.sin(phase + t / 20).astype(np.float32)
            ds.add_frame({
                "observation.images.top": _frame(top, t, rng),
                "observation.images.wrist": _frame(wrist, t + 3, rng),
                "observation.state": state,
                "action": np.sin(phase + (t + 3) / 20).astype(np.float32),
                "task": ["pick the cube", "open the drawer", "fold the towel"][e % 3],
            })
        ds.save_episode()
        print(f"episode {e}: {n} frames", flush=True)
    ds.finalize()
    open(os.path.join(out, "lerobot.done"), "w").close()
    return root


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--episodes", type=int, default=50)
    a = ap.parse_args()
    print(write(a.out, a.episodes))
