"""A JAX training loop on a mixture of packed datasets, as RL-style transitions in numpy batches.

    python tools/jax_example.py                      # packs the shipped fixture into a temp dir
    python tools/jax_example.py --data A/ --data B/  # packed datasets with the same keys

Two sources are mixed 30/70 (``lerobot_wds.reader.mix``), each read as ``(obs, action, reward, next_obs,
done)`` transitions (``lerobot_wds.reader.LeRobotTransitions``); a DataLoader with ``lerobot_wds.reader.numpy_collate``
hands the step plain numpy arrays, so the jitted step sees no torch tensor
(``jax.device_put`` moves the batch to the accelerator). The model is a linear behaviour-cloning
policy on ``observation.state`` plus a one-step consistency term between ``obs`` and
``next_obs`` masked by ``done``: small, but it uses every field a TD update would.
Without JAX installed it says so and exits 0 (``pip install jax`` to run it).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _sources(args: argparse.Namespace, tmp: str) -> list:
    from lerobot_wds import LeRobotTransitions

    if args.data:
        return [LeRobotTransitions(p, seed=i, obs_keys=["observation.state"]) for i, p in enumerate(args.data)]
    from lerobot_wds.packer.pack import PackOptions, pack

    out = Path(tmp) / "packed"
    pack(str(REPO / "tests" / "data" / "lerobot_v3_images"), str(out), PackOptions(progress=False))
    # One packed dataset split by episodes stands in for two "topics".
    return [LeRobotTransitions(str(out), episodes=eps, seed=i, obs_keys=["observation.state"])
            for i, eps in enumerate(([0, 1], [2, 3]))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", help="packed dataset (repeat for each source)")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.3, 0.7])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        print("jax_example: JAX is not installed (pip install jax); skipping")
        return 0
    from torch.utils.data import DataLoader

    from lerobot_wds import mix, numpy_collate

    with tempfile.TemporaryDirectory() as tmp:
        sources = _sources(args, tmp)
        weights = args.weights if len(args.weights) == len(sources) else [1.0] * len(sources)
        mixture = mix(sources, weights, seed=0)
        state_dim = sources[0].meta.features["observation.state"]["shape"][0]
        action_dim = sources[0].meta.features["action"]["shape"][0]
        params = {"w": jnp.zeros((state_dim, action_dim)), "b": jnp.zeros(action_dim)}

        def loss_fn(p, batch):
            s, s2 = batch["obs"]["observation.state"], batch["next_obs"]["observation.state"]
            bc = jnp.mean((s @ p["w"] + p["b"] - batch["action"]) ** 2)
            # Consistency of predictions between consecutive frames, not across episode ends.
            keep = 1.0 - batch["done"].astype(jnp.float32)
            smooth = jnp.mean(keep[:, None] * (s2 @ p["w"] - s @ p["w"]) ** 2)
            return bc + 0.1 * smooth

        @jax.jit
        def step(p, batch):
            loss, grads = jax.value_and_grad(loss_fn)(p, batch)
            return jax.tree_util.tree_map(lambda x, g: x - 0.1 * g, p, grads), loss

        fields = ("obs", "next_obs", "action", "done")
        for epoch in range(args.epochs):
            mixture.set_epoch(epoch)
            # forkserver: JAX is multithreaded, and forking a process that runs it can deadlock.
            loader = DataLoader(mixture, batch_size=args.batch_size, num_workers=args.workers,
                                collate_fn=numpy_collate, drop_last=True,
                                multiprocessing_context="forkserver" if args.workers else None)
            for batch in loader:
                batch = jax.device_put({k: batch[k] for k in fields})  # numpy in, no torch
                params, loss = step(params, batch)
            print(f"epoch {epoch}: loss {float(loss):.4f}")
        shares = ", ".join(f"{s:.2f}" for s in mixture.shares())
        print(f"realised shares {shares} (weights {', '.join(f'{w:.2f}' for w in mixture.weights)}), "
              f"device {jax.devices()[0].platform}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
