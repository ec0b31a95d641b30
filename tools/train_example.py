"""A minimal training loop over packed shards under ``torchrun``, with model and data checkpoints.

    torchrun --nproc-per-node 2 tools/train_example.py --steps 20 --ckpt ckpt/   # train, save
    torchrun --nproc-per-node 2 tools/train_example.py --steps 40 --ckpt ckpt/   # resumes at 20

A tiny policy (a conv net on one camera + ``observation.state``) predicts a 16-step ``action``
chunk; the loss ignores padded steps (``action_is_pad``). Data come from
``lerobot_wds.reader.LeRobotShardDataset`` through ``torchdata``'s ``StatefulDataLoader``; every
``--save-every`` steps each rank writes ``<ckpt>/rank<r>.pt`` with the model, optimizer, step,
epoch and the loader's ``state_dict()`` (per rank: each rank's loader holds its own workers'
positions). A re-run with the same ``--ckpt`` loads it and continues mid-epoch where it stopped.
Without ``--data``, the shipped fixture is packed into a temporary directory first. Runs on CPU
with gloo (NCCL when CUDA is there); also runs without torchrun as a single process.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

REPO = Path(__file__).resolve().parents[1]

CHUNK = 16  # action steps predicted per sample


class TinyPolicy(nn.Module):
    """Camera frame (3, H, W) in [0, 1] + state (S,) → action chunk (CHUNK, A)."""

    def __init__(self, state_dim: int, action_dim: int) -> None:
        super().__init__()
        self.vision = nn.Sequential(
            nn.Conv2d(3, 8, 5, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Linear(16 + state_dim, 64), nn.ReLU(), nn.Linear(64, CHUNK * action_dim))
        self.action_dim = action_dim

    def forward(self, image: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        z = torch.cat([self.vision(image), state], dim=-1)
        return self.head(z).view(-1, CHUNK, self.action_dim)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="packed dataset dir or URL (default: pack the shipped fixture)")
    p.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--camera", help="video key to learn from (default: the first camera)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--ckpt", type=Path, default=Path("train_ckpt"))
    p.add_argument("--save-every", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from torchdata.stateful_dataloader import StatefulDataLoader

    from lerobot_wds.packer.cli import parse_storage_options
    from lerobot_wds import LeRobotShardDataset
    from lerobot_wds.reader.io_stats import format_stats
    from lerobot_wds.reader.storage import Store

    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if distributed else 0
    data = args.data
    if data is None:  # every rank packs its own copy: packing is deterministic, so they are equal
        from lerobot_wds.packer.pack import PackOptions, pack

        data = os.path.join(tempfile.mkdtemp(prefix=f"train-example-{rank}-"), "packed")
        pack(str(REPO / "tests/data/lerobot_v3_av1"), data, PackOptions(shard_size=150_000, progress=False))
    options = parse_storage_options(args.storage_option)
    meta = Store(data, options).read_manifest()
    camera = args.camera or meta.video_keys[0]
    ds = LeRobotShardDataset(
        data, storage_options=options, seed=args.seed,
        delta_timestamps={"action": [k / meta.fps for k in range(CHUNK)]},
    )
    loader = StatefulDataLoader(ds, batch_size=args.batch_size, num_workers=args.workers, drop_last=True)
    torch.manual_seed(args.seed)  # same initial weights on every rank
    model = TinyPolicy(ds.meta.shapes["observation.state"][0], ds.meta.shapes["action"][0])
    if distributed:
        model = nn.parallel.DistributedDataParallel(model)
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)

    step, epoch = 0, 0
    ckpt = args.ckpt / f"rank{rank}.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        step, epoch = state["step"], state["epoch"]
        ds.set_epoch(epoch)
        loader.load_state_dict(state["data"])  # the workers continue where they stopped
        print(f"[rank {rank}] resumed from {ckpt} at step {step}, epoch {epoch}", flush=True)
    else:
        ds.set_epoch(epoch)

    while step < args.steps:
        for batch in loader:
            pred = model(batch[camera], batch["observation.state"])
            valid = (~batch["action_is_pad"]).unsqueeze(-1).float()
            loss = ((pred - batch["action"]) ** 2 * valid).sum() / valid.sum().clamp(min=1) / pred.shape[-1]
            optim.zero_grad()
            loss.backward()
            optim.step()
            step += 1
            if rank == 0 and step % 5 == 0:
                print(f"step {step} epoch {epoch} loss {loss.item():.4f}", flush=True)
            if step % args.save_every == 0 or step == args.steps:
                args.ckpt.mkdir(parents=True, exist_ok=True)
                tmp = ckpt.with_suffix(".tmp")
                torch.save({"model": model.state_dict(), "optim": optim.state_dict(), "step": step,
                            "epoch": epoch, "data": loader.state_dict()}, tmp)
                os.replace(tmp, ckpt)
            if step >= args.steps:
                break
        else:  # the epoch ended: next one, reshuffled
            epoch += 1
            ds.set_epoch(epoch)
    if rank == 0:
        print("data stats (rank 0, all its workers):\n" + format_stats(ds.io_stats()), flush=True)
    if distributed:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
