"""Synthetic camera frames: cheap numpy drawings that carry their (episode, frame) index.

A gradient background and a disc circling fast (no two consecutive frames look alike), optionally
with scene grain and per-frame sensor noise so that encoded frames cost what real camera frames do
(flat drawings compress to well under 1 KB per frame, which makes per-packet costs look far larger
than on real footage). The episode and frame index are drawn last as a block code in the top-left
corner, readable back with :func:`read_code` after lossy encoding.
"""

from __future__ import annotations

import functools

import numpy as np

_CODE_BITS = 10  # bits per code row: frame index (row 0) and episode index (row 1), mod 1024


def _block(h: int, w: int) -> int:
    """Side (pixels) of one code block; two rows of ``_CODE_BITS`` blocks fit the frame."""
    return max(4, min(w // (_CODE_BITS + 2), h // 8))


def check_shape(key: str, shape: tuple[int, int]) -> None:
    """ValueError naming ``key`` unless (H, W) suits yuv420p and leaves room for the frame code."""
    h, w = shape
    if h < 32 or w < 48 or h % 2 or w % 2:
        raise ValueError(f"{key}: camera size {h}x{w} (HxW); need even H >= 32 and W >= 48 "
                         "(yuv420p needs even sizes; the frame code needs room)")


_NOISE_FRAMES = 16  # sensor-noise bank cycled per frame; AV1 with a short GOP cannot exploit the period


@functools.lru_cache(maxsize=4)
def _texture_fields(h: int, w: int, texture: float) -> tuple[np.ndarray, np.ndarray]:
    """(static scene grain (H, W, 1), sensor-noise bank (K, H, W, 3)), int16, for ``texture`` > 0.

    The grain is Gaussian noise at half resolution, 2x2 box-smoothed, with std ``texture`` (8-bit
    levels): surface detail that every keyframe must code. The bank is per-pixel, per-channel noise of
    std ``texture / 3`` that changes every frame. Fixed seed: the same arguments give the same frames.
    """
    rng = np.random.default_rng([h, w, round(texture * 1000)])
    small = rng.normal(0.0, 1.0, ((h + 3) // 2, (w + 3) // 2))
    big = np.repeat(np.repeat(small, 2, 0), 2, 1)
    grain = (big[:h, :w] + big[1 : h + 1, :w] + big[:h, 1 : w + 1] + big[1 : h + 1, 1 : w + 1]) / 2.0
    grain = (texture * grain).astype(np.int16)[..., None]
    bank = rng.normal(0.0, texture / 3, (_NOISE_FRAMES, h, w, 3)).astype(np.int16)
    return grain, bank


def render_frames(episode_index: int, length: int, shape: tuple[int, int], seed: int, texture: float = 0.0) -> np.ndarray:
    """Frames (length, H, W, 3) uint8 RGB of one camera for one episode; pure, deterministic.

    ``texture`` (std in 8-bit levels; 0 = flat drawing) adds scene grain and per-frame sensor noise
    so that encoded frames cost what real camera frames do: at 240x320, AV1 crf 30, GOP 2,
    ``texture=10`` gives ~7 KB per frame, against ~0.7 KB for the flat drawing. The frame code
    is drawn last, clean, so :func:`read_code` reads it either way.
    """
    check_shape("render_frames", shape)
    if texture < 0:
        raise ValueError(f"texture={texture}: must be >= 0 (std of the added grain, 8-bit levels)")
    h, w = shape
    rng = np.random.default_rng([seed, episode_index, h, w])
    c0, c1 = rng.integers(40, 200, size=(2, 3))
    ramp = (np.arange(w)[None, :, None] / w + np.arange(h)[:, None, None] / (2 * h)) / 1.5
    bg = (c0 + (c1 - c0) * ramp).astype(np.uint8)
    bs = _block(h, w)
    r = max(3, min(h, w) // 10)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disc = yy**2 + xx**2 <= r * r
    color = rng.integers(0, 256, size=3).astype(np.uint8)
    phase, speed = rng.uniform(0, 2 * np.pi), rng.choice([-1, 1]) * rng.uniform(0.45, 0.7)
    top = 2 * bs + r + 1
    if texture:
        grain, bank = _texture_fields(h, w, float(texture))
        bg16 = bg + grain
        work = np.empty((h, w, 3), np.int16)
    out = np.empty((length, h, w, 3), np.uint8)
    for i in range(length):
        f = out[i]
        a = phase + speed * i
        cy = int(top + (h - r - 1 - top) * (0.5 + 0.5 * np.sin(a)))
        cx = int(r + (w - 2 * r - 1) * (0.5 + 0.5 * np.cos(1.3 * a)))
        if texture:
            np.copyto(work, bg16)
            work[cy - r : cy + r + 1, cx - r : cx + r + 1][disc] = color
            work += bank[(i + episode_index) % _NOISE_FRAMES]
            np.clip(work, 0, 255, out=work)
            f[:] = work
        else:
            f[:] = bg
            f[cy - r : cy + r + 1, cx - r : cx + r + 1][disc] = color
        for row, value in enumerate((i, episode_index)):
            bits = (value >> np.arange(_CODE_BITS)) & 1
            strip = np.repeat(np.where(bits, 235, 16).astype(np.uint8), bs)
            f[row * bs : (row + 1) * bs, : _CODE_BITS * bs] = strip[None, :, None]
    return out


def read_code(frame: np.ndarray) -> tuple[int, int]:
    """(episode_index, frame_index) mod 1024 drawn by :func:`render_frames`; frame is (H, W, 3)."""
    h, w = frame.shape[:2]
    bs = _block(h, w)
    gray = frame.astype(np.float32).mean(axis=-1)
    values = []
    for row in range(2):
        y = row * bs + bs // 2
        xs = np.arange(_CODE_BITS) * bs + bs // 2
        bits = gray[y, xs] > 128
        values.append(int((bits.astype(np.int64) << np.arange(_CODE_BITS)).sum()))
    return values[1], values[0]
