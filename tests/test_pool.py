"""reader/pool.py: the episode-pool order is a permutation, bounded by the pool, and seeded."""

import itertools

import pytest

from lerobot_wds.reader.pool import pool_order, stable_seed

LENGTHS = [45, 80, 12, 60, 90, 33, 1, 7]


@pytest.mark.parametrize("pool_size", [1, 2, 4, 100])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_every_frame_exactly_once(pool_size, seed):
    draws = [(p, f) for p, f, _ in pool_order(LENGTHS, pool_size, seed)]
    assert sorted(draws) == [(p, f) for p, n in enumerate(LENGTHS) for f in range(n)]


@pytest.mark.parametrize("pool_size", [1, 3])
def test_pool_bound(pool_size):
    # Spans enter in order, at most pool_size at a time: a draw's span is among the first
    # (exhausted + pool_size) spans.
    exhausted = 0
    for p, _, done in pool_order(LENGTHS, pool_size, 3):
        assert p < exhausted + pool_size
        exhausted += done


def test_done_marks_last_draw_of_each_span():
    seen = {}
    for p, _, done in pool_order(LENGTHS, 4, 5):
        seen[p] = seen.get(p, 0) + 1
        assert done == (seen[p] == LENGTHS[p])


def test_seeded_and_shuffled():
    a = list(pool_order(LENGTHS, 4, 11))
    assert a == list(pool_order(LENGTHS, 4, 11))
    assert a != list(pool_order(LENGTHS, 4, 12))
    # Mixing: the first 32 draws come from more than one span.
    assert len({p for p, _, _ in a[:32]}) > 1


def test_unshuffled_is_in_order():
    draws = [(p, f) for p, f, _ in pool_order(LENGTHS, 4, 0, shuffle=False)]
    assert draws == [(p, f) for p, n in enumerate(LENGTHS) for f in range(n)]


def test_resume_by_resimulation():
    full = list(pool_order(LENGTHS, 4, 9))
    for k in (0, 1, 100, len(full)):
        it = pool_order(LENGTHS, 4, 9)
        for _ in itertools.islice(it, k):
            pass
        assert full[:k] + list(it) == full


def test_stable_seed():
    assert stable_seed(0, 1, 2, 3) == stable_seed(0, 1, 2, 3)
    assert stable_seed(0, 1, 2, 3) != stable_seed(0, 1, 3, 2)


def test_bad_pool_size():
    with pytest.raises(ValueError, match="episode_pool_size=0"):
        list(pool_order(LENGTHS, 0, 0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pool_members_drawn_alike_while_spans_wait_then_in_proportion(seed):
    """A long span beside short ones with more waiting: it gets about half the draws (every pool
    member alike), not its share of the pool's frames (~95 %); once nothing waits, a uniform
    shuffle of what is left, so every span ends near the end."""
    lengths = [400] + [20] * 10 + [400]
    draws = list(pool_order(lengths, 2, seed))
    last_entry = next(k for k, (p, _, _) in enumerate(draws) if p == len(lengths) - 1)
    while_waiting = [p for p, _, _ in draws[:last_entry]]
    assert 0.35 < while_waiting.count(0) / len(while_waiting) < 0.65
    tail = [p for p, _, _ in draws[last_entry:]]
    ends = [max(k for k, p in enumerate(tail) if p == q) for q in set(tail)]
    assert min(ends) > 0.9 * len(tail)  # the spans left run out together


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rounds_draw_every_pool_span_once_while_spans_wait(seed):
    """While spans wait to enter (and none leaves), each block of ``pool_size`` draws is a
    permutation of the pool: a batch holds as many distinct episodes as the pool allows."""
    draws = [p for p, _, _ in pool_order([50] * 10, 5, seed)]
    blocks = [draws[i:i + 5] for i in range(0, 250, 5)]
    assert all(sorted(b) == [0, 1, 2, 3, 4] for b in blocks)
    assert len({tuple(b) for b in blocks}) > 10  # each round in its own random order
