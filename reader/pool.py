"""The episode-pool sampling order, as a pure function of span lengths and a seed.

A worker's spans (contiguous frame ranges of whole episodes, from ``epoch_plan.py``) enter a pool
of ``pool_size`` spans in order. Each draw picks a span, then the next frame of that span's
order: its frames in file order from a random start, wrapping around to its first frame after
its last. A span leaves when its last frame is drawn and the next span enters. Every frame of
every span is drawn exactly once. Which span: uniformly among the pool's spans while spans still
wait to enter; once every remaining span is in the pool, with probability proportional to its
remaining frames (a uniform shuffle of the frames left, so all spans run out together).

Why two rules: drawing in proportion to remaining frames throughout would make a streaming pool
lopsided: a span that just entered has all its frames and is drawn most, while spans nearly done
hold their slots and are rarely drawn, so a batch mixes fewer episodes than the pool holds
(``tools/mixing_sim.py``: 18.3 distinct episodes per batch of 32 at pool 64 over 1,000 episodes,
against 25.3 drawing uniformly, 31.5 for a global shuffle). Drawing uniformly at the end would
leave the longest spans alone in the last batches; in proportion, they end with the rest.

Why file order: a span's frames are then decoded once each, front to back, with a held decoder
(``video.py``), and only the window reach of decoded frames is kept per episode, so a pool of many
episodes costs their compressed bytes, not their decoded frames. Why a random start: the pool
consumes every span at the same rate, so without it every episode of the pool would be at the
same phase at the same time (an epoch's first batches all of episode starts, its last of episode
ends); with it the phases in a batch are uniform, as in a global shuffle, for one extra seek per
span. Mixing across episodes comes from the pool's size, not from the order inside an episode.

Why a pure function: the order depends only on ``(lengths, pool_size, seed)``, never on data, so
exact resume re-simulates the first ``k`` draws from the lengths alone (no reads) and then loads
only the spans still in the pool. Trade-offs: mixing across episodes is bounded by ``pool_size``
(a batch holds frames of at most ``pool_size`` episodes, and spans enter in plan order, so the
start of an epoch favours the first spans); two samples of one episode in a batch are a few
frames apart; memory is ``pool_size`` compressed episodes. Per draw the cost is O(pool_size)
Python work, which is tiny next to a decode. ``shuffle=False`` yields spans in order, frames in
order.
"""

from __future__ import annotations

import hashlib
import random
from typing import Iterator, Sequence


def stable_seed(*parts: int) -> int:
    """A 64-bit seed from integers, the same on every machine and process (no pid, no time)."""
    digest = hashlib.blake2b(",".join(str(int(p)) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def pool_order(
    lengths: Sequence[int], pool_size: int, seed: int, shuffle: bool = True
) -> Iterator[tuple[int, int, bool]]:
    """Yield ``(span position, frame offset within span, span is now exhausted)`` for every frame.

    ``lengths`` are the spans' frame counts in entry order; ``seed`` should already mix
    (seed, epoch, rank, worker) (see :func:`stable_seed`). Exactly ``sum(lengths)`` draws.
    """
    if pool_size < 1:
        raise ValueError(f"episode_pool_size={pool_size} must be >= 1")
    if not shuffle:
        for pos, n in enumerate(lengths):
            for f in range(n):
                yield pos, f, f == n - 1
        return
    rng = random.Random(seed)
    # Parallel lists over the spans currently in the pool.
    positions: list[int] = []
    starts: list[int] = []  # the random first frame of each span's order
    remaining: list[int] = []
    total = 0
    nxt = 0
    n_spans = len(lengths)
    while True:
        while len(positions) < pool_size and nxt < n_spans:
            n = int(lengths[nxt])
            if n > 0:
                positions.append(nxt)
                starts.append(rng.randrange(n))
                remaining.append(n)
                total += n
            nxt += 1
        if total == 0:
            return
        if nxt < n_spans:  # spans still wait to enter: every span in the pool alike
            i = rng.randrange(len(positions))
        else:  # all remaining spans are in: a uniform shuffle of their frames
            r = rng.randrange(total)
            i = 0
            while r >= remaining[i]:
                r -= remaining[i]
                i += 1
        n = int(lengths[positions[i]])
        frame = (starts[i] + n - remaining[i]) % n
        remaining[i] -= 1
        total -= 1
        done = remaining[i] == 0
        yield positions[i], frame, done
        if done:
            del positions[i], starts[i], remaining[i]
