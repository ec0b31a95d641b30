"""Packing progress on stderr: episodes done, episodes/s and output MB/s (tqdm)."""

from __future__ import annotations

import time


class Progress:
    """A tqdm bar counting episodes, with the output rate in MB/s (10^6 bytes per second) as postfix.

    Episodes skipped because their shard was already complete count as done but not towards rates.
    """

    def __init__(self, total_episodes: int, enabled: bool = True) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total_episodes, unit="ep", desc="packing", disable=not enabled, smoothing=0.1)
        self._t0 = time.perf_counter()
        self.bytes = 0
        self.episodes = 0

    def skip(self, episodes: int) -> None:
        if episodes:
            self._bar.update(episodes)
            self._bar.set_postfix_str(f"{episodes} ep already packed", refresh=False)

    def update(self, episodes: int, nbytes: int) -> None:
        """Count ``episodes`` more done that wrote ``nbytes`` bytes of shard data."""
        self.episodes += episodes
        self.bytes += nbytes
        dt = max(time.perf_counter() - self._t0, 1e-9)
        self._bar.set_postfix_str(f"{self.episodes / dt:.1f} ep/s, {self.bytes / dt / 1e6:.1f} MB/s", refresh=False)
        self._bar.update(episodes)

    def close(self) -> None:
        self._bar.close()
