"""Runs ``lerobot-wds train ARGS...`` in this process and writes, per training step, the ``index``,
``episode_index`` and ``frame_index`` of the batch the loop consumed, and whether the dataset built
it (``built_by_dataset``), one JSON line each, to the file named by ``SPY_OUT`` (under ``torchrun``
with several processes: ``SPY_OUT.<rank>``, one file per process). The loop itself is lerobot's;
this only watches its batches."""

import json
import os
import sys

from lerobot.scripts import lerobot_train as script

from lerobot_wds.packer.cli import main

cycle = script.cycle


def watched(loader):
    path = os.environ["SPY_OUT"]
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        path += f".{os.environ['RANK']}"
    with open(path, "a") as out:
        for batch in cycle(loader):
            row = {k: batch[k].tolist() for k in ("index", "episode_index", "frame_index")}
            row["built_by_dataset"] = getattr(loader.dataset, "batch_size", None) is not None
            out.write(json.dumps(row) + "\n")
            out.flush()
            yield batch


if __name__ == "__main__":  # lerobot's DataLoader workers are spawned: they import this file
    script.cycle = watched
    sys.exit(main(["train", *sys.argv[1:]]))
