"""The episode-pool sampling order, as a pure function of span lengths and a seed.

A worker's spans (contiguous frame ranges of whole episodes, from ``epoch_plan.py``) enter a pool
of ``pool_size`` spans in order. Each draw picks a span, then the next frame of that span's
order: its frames in file order from a random start, wrapping around to its first frame after
its last. A span leaves when its last frame is drawn and the next span enters. Every frame of
every span is drawn exactly once. Which span: while spans still wait to enter, in rounds: each
round is a random permutation of the spans in the pool when it starts, so every span is drawn
once a round (a span that enters during a round joins the next one); once every remaining span
is in the pool, with probability proportional to its remaining frames (a uniform shuffle of the
frames left, so all spans run out together).

Why rounds: a batch then holds as many distinct episodes as the pool allows (a batch of 32 from a
pool of 64 is 32 different spans unless it straddles two rounds), and two consecutive batches
share fewer episodes than with independent draws. ``tools/mixing_sim.py``, pool 64, batch 32,
1,000 episodes: 31.7 distinct episodes per batch (a global shuffle: 31.5; drawing each span
uniformly and independently: 25.3; in proportion to remaining frames: 18.3, because a span that
just entered is drawn most and spans nearly done hold their slots), and 26 % of a batch's episodes
in the previous batch at 0 workers (independent uniform draws: 40 %; a global shuffle: 3 %; at 2
workers consecutive batches come from different workers, and 27 % are in the same worker's previous
batch). Why in proportion at the
end: in rounds, the longest spans would be left alone in the last batches; in proportion, they
end with the rest.

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
start of an epoch favours the first spans); at 0 workers consecutive batches share episodes (a
pool of 64 is two batches of 32); memory is ``pool_size`` compressed episodes and their decoders.
Per draw the cost is O(1) Python work in rounds, O(pool_size) at the end, tiny next to a decode.
``shuffle=False`` yields spans in order, frames in order.
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
    starts: dict[int, int] = {}  # span position -> the random first frame of its order
    remaining: dict[int, int] = {}  # span position -> frames not drawn yet (the pool, in entry order)
    deck: list[int] = []  # this round's spans not drawn yet (drawn from the end)
    total = 0
    nxt = 0
    n_spans = len(lengths)
    while True:
        while len(remaining) < pool_size and nxt < n_spans:
            n = int(lengths[nxt])
            if n > 0:
                starts[nxt] = rng.randrange(n)
                remaining[nxt] = n
                total += n
            nxt += 1
        if total == 0:
            return
        if nxt < n_spans:  # spans still wait to enter: rounds, every span in the pool once a round
            while deck and deck[-1] not in remaining:  # it left during this round
                deck.pop()
            if not deck:
                deck = list(remaining)
                rng.shuffle(deck)
            pos = deck.pop()
        else:  # all remaining spans are in: a uniform shuffle of their frames
            r = rng.randrange(total)
            for pos, left in remaining.items():
                if r < left:
                    break
                r -= left
        n = int(lengths[pos])
        frame = (starts[pos] + n - remaining[pos]) % n
        remaining[pos] -= 1
        total -= 1
        done = remaining[pos] == 0
        yield pos, frame, done
        if done:
            del starts[pos], remaining[pos]
