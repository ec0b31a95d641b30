"""A real 2-rank torch.distributed job (gloo, CPU), 2 DataLoader workers per rank, 2 epochs:
ranks disjoint, union complete up to the documented remainder (< world_size frames), identical
batch counts on every rank in every epoch (a collective per batch would hang otherwise), and the
order changes between epochs."""

from __future__ import annotations

import datetime
import json
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from reader_helpers import pack_fixture

NAME = "lerobot_v3_images"
EPISODES = [0, 1, 3]  # 20 + 7 + 18 = 45 frames: odd, so one frame is left out per epoch
TOTAL = 45
EPOCHS, BATCH, WORLD = 2, 4, 2


def _rank_main(rank: int, root: str, port: int, out_dir: str) -> None:
    from torch.utils.data import DataLoader

    from lerobot_wds.reader import LeRobotShardDataset

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=120))  # a batch-count mismatch fails, not hangs
    try:
        ds = LeRobotShardDataset(root, episodes=EPISODES, seed=3, episode_pool_size=2)  # rank from dist
        loader = DataLoader(ds, batch_size=BATCH, num_workers=2)
        epochs = []
        for epoch in range(EPOCHS):
            ds.set_epoch(epoch)
            indices, batches = [], 0
            for batch in loader:
                n = torch.tensor([1])
                dist.all_reduce(n)  # every rank must reach every batch
                batches += 1
                indices += batch["index"].tolist()
            epochs.append({"indices": indices, "batches": batches, "len": len(ds)})
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump({"epochs": epochs, "stats": ds.io_stats()}, f)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_ranks_two_workers(tmp_path):
    from testkit.servers import free_port

    root = pack_fixture(NAME, tmp_path / "packed")
    mp.spawn(_rank_main, args=(root, free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    orders = []
    for epoch in range(EPOCHS):
        per_rank = [r["epochs"][epoch] for r in ranks]
        sets = [set(e["indices"]) for e in per_rank]
        for e, s in zip(per_rank, sets):
            assert len(e["indices"]) == len(s) == e["len"] == TOTAL // WORLD  # no duplicates, as documented
        assert not sets[0] & sets[1], f"epoch {epoch}: ranks overlap"
        union = sets[0] | sets[1]
        assert len(union) == TOTAL - TOTAL % WORLD and union <= set(range(20 + 7)) | set(range(62, 80))
        assert per_rank[0]["batches"] == per_rank[1]["batches"] == -(-(TOTAL // WORLD) // BATCH)
        orders.append(per_rank[0]["indices"] + per_rank[1]["indices"])
    assert orders[0] != orders[1], "epochs did not reshuffle"
    assert all(r["stats"]["bytes_fetched"] > 0 for r in ranks)  # stats aggregated from the workers
