"""Decoding an episode's camera clips in memory with torchcodec, reusing every decoded frame.

One ``VideoDecoder`` per pool episode and camera, built from the clip bytes on first use and
dropped when the episode leaves the pool. A sample asks for all the frames it needs from a clip
in one ``get_frames_at`` call. Decoding a frame means decoding its GOP from the key frame up to it,
so those frames come for free; and finishing a short GOP (``lookahead_gop`` frames or fewer) costs
one decode per frame that a later draw of the pool would otherwise pay the whole GOP for. All of
them go into a :class:`FrameCache` keyed by (episode, camera, frame) with a byte budget (LRU), so
with GOP 2 a random frame costs about one decode instead of 1.5 while memory stays bounded.
Trade-off: frames decoded ahead that are evicted before use were wasted work, so the dataset
turns the lookahead on only when the budget holds half of the pool's frames
(:func:`lookahead_pays`); otherwise only the free frames (key frame up to the needed one) are kept.

Frames come out as uint8 ``(N, C, H, W)``; :func:`to_float` makes LeRobot's float32 in [0, 1]
exactly as LeRobot does (``u8 / 255.0`` in torch), bit for bit.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Hashable

import numpy as np
import torch

from .episodes import LoadedEpisode, EpisodeError


def recycle_frame_memory() -> bool:
    """Let this process reuse freed frame buffers instead of faulting in fresh pages per frame.

    Every sample allocates ~1 MB float32 frames that live until the batch is collated. glibc's
    defaults hand such blocks back to the OS on free, so the next sample's frames page-fault
    their memory in again, which costs more than decoding them (measured ~0.5 ms per 240×320
    frame here). Raising the mmap threshold (32 MB) and the trim threshold (1 GB) keeps freed
    blocks in the heap for reuse; the price is that the process's RSS stays at its peak instead
    of shrinking. The dataset calls this in DataLoader worker processes only (they exist to load
    data); returns False where it does not apply (not glibc).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


def to_float(frames_u8: torch.Tensor) -> torch.Tensor:
    """uint8 frames → float32 in [0, 1], computed as LeRobot does (``(u8 / 255.0).to(float32)``)."""
    return (frames_u8 / 255.0).to(torch.float32)


class FrameCache:
    """Decoded uint8 frames, least recently used first out once ``budget_bytes`` is exceeded."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = int(budget_bytes)
        self.bytes = 0
        self._frames: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._frames)

    def get(self, key: Hashable) -> torch.Tensor | None:
        t = self._frames.get(key)
        if t is None:
            self.misses += 1
            return None
        self._frames.move_to_end(key)
        self.hits += 1
        return t

    def put(self, key: Hashable, frame: torch.Tensor) -> None:
        if key in self._frames or self.budget_bytes <= 0:
            return
        self._frames[key] = frame
        self.bytes += frame.numel() * frame.element_size()
        while self.bytes > self.budget_bytes and self._frames:
            _, old = self._frames.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()

    def drop(self, owner: Hashable) -> None:
        """Forget every frame whose key starts with ``owner`` (an episode leaving the pool)."""
        for k in [k for k in self._frames if k[0] == owner]:
            t = self._frames.pop(k)
            self.bytes -= t.numel() * t.element_size()


def lookahead_pays(cache_bytes: int, pool_size: int, mean_length: float, frame_bytes: int) -> bool:
    """Whether decoding the rest of a short GOP ahead is worth it.

    A frame decoded ahead is used only if it is still cached when the pool draws it, which is on
    average about half the pool's frames later. When the cache budget holds at least half of the
    pool's frames (``pool_size × mean_length`` frames of ``frame_bytes`` summed over cameras), the
    lookahead saves a decode per GOP; when it holds far less, the frames are mostly evicted unused
    and the lookahead costs a decode instead.
    """
    return cache_bytes >= 0.5 * pool_size * mean_length * frame_bytes


class EpisodeVideo:
    """Frames of one in-memory episode's cameras, by episode-local frame index."""

    def __init__(
        self, episode: LoadedEpisode, cache: FrameCache, device: str = "cpu", lookahead_gop: int = 4
    ) -> None:
        self.episode = episode
        self.cache = cache
        self.device = device
        self.lookahead_gop = lookahead_gop
        self._decoders: dict[str, object] = {}
        self._keyframes: dict[str, np.ndarray | None] = {}
        self.decoded = 0  # frames torchcodec returned (cheap proxy for decode work)

    def _decoder(self, camera: str):
        dec = self._decoders.get(camera)
        if dec is None:
            from torchcodec.decoders import VideoDecoder

            info = self.episode.meta.clips[camera]
            try:
                dec = VideoDecoder(self.episode.clips[camera], device=self.device, seek_mode="exact")
            except (RuntimeError, ValueError) as e:
                raise EpisodeError(f"{self.episode.where}: clip of camera {camera!r} does not open ({e})") from e
            try:  # private torchcodec API: without it, decode just the frames asked for
                kf: np.ndarray | None = np.asarray(dec._get_key_frame_indices(), dtype=np.int64)
            except (AttributeError, RuntimeError):
                kf = None
            n = dec.metadata.num_frames
            if n is not None and n < info.lead_in + self.episode.length:
                raise EpisodeError(
                    f"{self.episode.where}: clip of camera {camera!r} has {n} frames, needs "
                    f"lead_in {info.lead_in} + length {self.episode.length}; repack this episode"
                )
            self._decoders[camera] = dec
            self._keyframes[camera] = kf if kf is not None and len(kf) else None
        return dec

    def _to_decode(self, camera: str, clip_frames: np.ndarray) -> list[int]:
        """Clip frames to request: each needed frame's GOP from its key frame, whole when short."""
        kf = self._keyframes[camera]
        if kf is None:
            return sorted({int(c) for c in clip_frames})
        info = self.episode.meta.clips[camera]
        last = info.lead_in + self.episode.length  # end (exclusive) of the episode's frames
        out: set[int] = set()
        for c in clip_frames:
            i = int(np.searchsorted(kf, c, side="right")) - 1
            start = max(int(kf[i]) if i >= 0 else 0, info.lead_in)
            end = int(kf[i + 1]) if i + 1 < len(kf) else last
            end = min(end, last)
            stop = end if end - start <= self.lookahead_gop else c + 1
            out.update(range(start, stop))
        return sorted(out)

    def frames(self, camera: str, idx: np.ndarray) -> torch.Tensor:
        """uint8 ``(len(idx), C, H, W)`` frames at episode-local indices ``idx`` (any order, repeats ok)."""
        return torch.stack(self._gather(camera, idx))

    def frames_float(self, camera: str, idx: np.ndarray) -> torch.Tensor:
        """float32 ``(len(idx), C, H, W)`` in [0, 1], equal bit for bit to ``to_float(frames(...))``,
        written straight into the output (no uint8 stack in between: one pass over the pixels)."""
        got = self._gather(camera, idx)
        out = torch.empty((len(got), *got[0].shape), dtype=torch.float32, device=got[0].device)
        for j, t in enumerate(got):
            torch.div(t, 255.0, out=out[j])
        return out

    def _gather(self, camera: str, idx: np.ndarray) -> list[torch.Tensor]:
        owner = self.episode.episode_index
        got: dict[int, torch.Tensor] = {}
        missing = []
        for i in dict.fromkeys(int(i) for i in idx):
            t = self.cache.get((owner, camera, i))
            if t is None:
                missing.append(i)
            else:
                got[i] = t
        if missing:
            dec = self._decoder(camera)
            lead = self.episode.meta.clips[camera].lead_in
            want = self._to_decode(camera, np.asarray(missing) + lead)
            try:
                batch = dec.get_frames_at(want).data
            except (RuntimeError, ValueError, IndexError) as e:
                raise EpisodeError(
                    f"{self.episode.where}: decoding frames {missing} of camera {camera!r} failed ({e})"
                ) from e
            self.decoded += len(want)
            for c, t in zip(want, batch):
                i = c - lead
                if i in got:
                    continue
                if i in missing:
                    got[i] = t
                self.cache.put((owner, camera, i), t.clone())  # own storage: budget stays exact
        return [got[int(i)] for i in idx]

    def close(self) -> None:
        """Release decoders and this episode's cached frames (the episode left the pool)."""
        self._decoders.clear()
        self.cache.drop(self.episode.episode_index)
