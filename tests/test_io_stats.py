"""reader/stats.py: counters summed across real DataLoader worker processes."""

from __future__ import annotations

import pickle

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lerobot_wds.reader.io_stats import DECODE_S, POOL_EPISODES, SKIPPED, Stats, format_stats, merge_states


class Counting(IterableDataset):
    """Each worker yields 10 items and counts them the way the reader does."""

    def __init__(self) -> None:
        self.stats = Stats(flush_interval_s=3600)  # only the explicit flush writes

    def __iter__(self):
        info = get_worker_info()
        wid = info.id if info else 0
        try:
            for k in range(10):
                with self.stats.timer(DECODE_S):
                    self.stats.add("items")
                self.stats.observe(POOL_EPISODES, wid * 10 + k)
                yield k
        finally:
            self.stats.flush()


def test_workers_counts_are_summed_in_the_main_process():
    ds = Counting()
    for _ in range(2):  # two epochs, fresh worker processes each time
        assert len(list(DataLoader(ds, batch_size=None, num_workers=2))) == 20
    snap = ds.stats.snapshot()
    assert snap["items"] == 40
    assert snap[DECODE_S] > 0
    assert snap[f"{POOL_EPISODES}_max"] == 19
    assert snap[f"{POOL_EPISODES}_mean"] == 9.5  # mean over 40 observations of 0..9 and 10..19
    ds.stats.add(SKIPPED, 2)  # the main process's own counts join in
    assert ds.stats.snapshot()[SKIPPED] == 2 and ds.stats.snapshot()["items"] == 40


def test_pickled_copy_starts_from_zero_and_shares_the_dir():
    s = Stats()
    s.add("bytes_fetched", 5)
    clone = pickle.loads(pickle.dumps(s))
    assert clone.dir == s.dir and clone.snapshot() == {}  # s has not flushed yet
    clone.add("bytes_fetched", 1)
    s.flush()
    assert clone.snapshot()["bytes_fetched"] == 6 and s.snapshot()["bytes_fetched"] == 5
    clone.flush()
    assert s.snapshot()["bytes_fetched"] == 6


def test_merge_and_format():
    merged = merge_states([{"counts": {"a_s": 1.5}, "levels": {"p": [2, 4.0, 3.0]}},
                           {"counts": {"a_s": 0.5, "bytes_fetched": 2e6}, "levels": {"p": [2, 0.0, 0.0]}}])
    assert merged == {"a_s": 2.0, "bytes_fetched": 2e6, "p_mean": 1.0, "p_max": 3.0}
    text = format_stats(merged)
    assert "2.000 MB" in text and "2.000 s" in text
