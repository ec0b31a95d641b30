"""``lerobot-wds train``: lerobot 0.6.1's own training loop on packed shards (run in the lerobot env).

Each run is a real subprocess of lerobot's training script (through ``train_spy.py``, which writes
the ``index``/``episode_index``/``frame_index`` of every batch the loop consumed). Policies are
shrunk so a few CPU steps take seconds.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("lerobot")

from testkit.synthetic import write_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "data" / "lerobot_v3_av1"
SPY = Path(__file__).with_name("train_spy.py")
CLI = [sys.executable, "-c", "import sys; from lerobot_wds.packer.cli import main; sys.exit(main())"]
COMMON = ["--dataset.repo_id=x", "--policy.device=cpu", "--policy.push_to_hub=false", "--wandb.enable=false",
          "--policy.pretrained_backbone_weights=null", "--batch_size=4", "--log_freq=1"]
SMALL_ACT = ["--policy.type=act", "--policy.dim_model=32", "--policy.n_heads=2", "--policy.dim_feedforward=64",
             "--policy.n_encoder_layers=1", "--policy.n_vae_encoder_layers=1", "--policy.chunk_size=5",
             "--policy.n_action_steps=5", "--policy.latent_dim=8"]
SMALL_DIFFUSION = ["--policy.type=diffusion", "--policy.down_dims=[16,32]", "--policy.diffusion_step_embed_dim=16",
                   "--policy.crop_shape=null", "--policy.num_inference_steps=2", "--policy.horizon=8",
                   "--policy.n_action_steps=4"]


def pack(src: Path, out: Path) -> Path:
    subprocess.run([*CLI, "pack", str(src), str(out), "--no-progress"], check=True, capture_output=True, cwd=REPO)
    return out


def train(args: list[str], spy: Path, processes: int = 1) -> list[dict]:
    """Run the training (a subprocess; with ``processes`` > 1 under ``torchrun``, which accelerate
    runs as several CPU processes with gloo) and return the batches its loop consumed, in order
    (with several processes: per step, a list of each process's batch)."""
    env = {**os.environ, "SPY_OUT": str(spy), "PYTHONPATH": str(REPO)}
    launch = [sys.executable]
    if processes > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        launch = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                  f"--master_port={port}"]
    run = subprocess.run([*launch, str(SPY), *COMMON, *args], env=env, capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr[-4000:]
    if processes == 1:
        return [json.loads(line) for line in spy.read_text().splitlines()]
    per_rank = [[json.loads(line) for line in Path(f"{spy}.{r}").read_text().splitlines()] for r in range(processes)]
    return [list(step) for step in zip(*per_rank, strict=True)]


def frames(batches: list[dict]) -> list[int]:
    return [i for b in batches for i in b["index"]]


def test_act_checkpoint_resume_is_exact_and_epochs_differ(tmp_path: Path) -> None:
    root = pack(FIXTURE, tmp_path / "packed")
    # Episode 2 of the fixture: 12 frames (dataset indices 125..136); two workers give 6 each,
    # so an epoch is 4 batches of at most 4 (6 = 4 + 2 per worker).
    epoch = list(range(125, 137))
    args = [*SMALL_ACT, f"--dataset.root={root}", "--dataset.episodes=[2]", "--num_workers=2", "--save_freq=3"]
    a = train([*args, "--steps=6", f"--output_dir={tmp_path / 'run'}"], tmp_path / "a.jsonl")
    assert len(a) == 6
    assert all(x["built_by_dataset"] for x in a)  # the dataset builds lerobot's batches (reader/batch.py)
    ckpt = tmp_path / "run" / "checkpoints" / "000003"
    assert (ckpt / "pretrained_model" / "model.safetensors").is_file()
    position = json.loads((ckpt / "training_state" / "lerobot_wds_data_position.json").read_text())
    assert (position["epoch"], position["yielded"]) == (0, [6, 4])  # batches w0, w1, w0 consumed
    assert sorted(frames(a[:4])) == epoch  # an epoch: every frame once

    b = train(["--resume=true", f"--config_path={ckpt / 'pretrained_model' / 'train_config.json'}", "--steps=8",
               f"--output_dir={tmp_path / 'resumed'}"], tmp_path / "b.jsonl")
    assert len(b) == 5  # steps 4..8
    assert all(x["built_by_dataset"] for x in b)
    # The stop and the resumed run cover epoch 0 exactly once; epoch 1 is the uninterrupted one.
    assert sorted(frames(a[:3]) + frames(b[:1])) == epoch
    assert frames(b[1:3]) == frames(a[4:6])
    assert sorted(frames(b[1:5])) == epoch
    assert frames(b[1:5]) != frames(a[:4])  # two epochs, two orders


def test_two_processes_read_disjoint_shares_and_resume_exactly(tmp_path: Path) -> None:
    """``torchrun`` with two processes (accelerate on the CPU, gloo): each reads its own half of the
    epoch, nothing is dispatched from the main process (whose ``concatenate`` raises on lerobot's
    task strings), and the data position holds for both."""
    root = pack(FIXTURE, tmp_path / "packed")
    epoch = list(range(125, 137))
    # Episode 2's 12 frames: 6 per process, 3 per worker: an epoch is 2 steps of a batch of 3 per process.
    args = [*SMALL_ACT, f"--dataset.root={root}", "--dataset.episodes=[2]", "--num_workers=2", "--save_freq=3"]
    a = train([*args, "--steps=6", f"--output_dir={tmp_path / 'run'}"], tmp_path / "a.jsonl", processes=2)
    assert len(a) == 6 and all(x["built_by_dataset"] for step in a for x in step)
    for e in range(3):
        shares = [frames([step[r] for step in a[2 * e: 2 * e + 2]]) for r in (0, 1)]
        assert len(shares[0]) == len(shares[1]) == 6 and sorted(shares[0] + shares[1]) == epoch
    ckpt = tmp_path / "run" / "checkpoints" / "000003"
    position = json.loads((ckpt / "training_state" / "lerobot_wds_data_position.json").read_text())
    assert (position["epoch"], position["yielded"], position["num_processes"]) == (1, [3, 0], 2)

    b = train(["--resume=true", f"--config_path={ckpt / 'pretrained_model' / 'train_config.json'}", "--steps=8",
               f"--output_dir={tmp_path / 'resumed'}"], tmp_path / "b.jsonl", processes=2)
    assert len(b) == 5  # steps 4..8
    assert b[:3] == a[3:6]  # the rest of epoch 1, then epoch 2, as the uninterrupted run had them
    assert sorted(frames(a[2] + b[0])) == epoch  # the stop and the resumed run: epoch 1 exactly once
    assert sorted(frames(b[3] + b[4])) == epoch


def test_diffusion_never_sees_dropped_frames_and_splits_eval_by_episode(tmp_path: Path) -> None:
    # Tasks alternate over episodes: eval_split=0.5 holds out the last episode of each task (2, 3).
    src = write_dataset(tmp_path / "src", episodes=[20, 12, 20, 12], fps=10,
                        cameras={"observation.images.top": (48, 64)})
    root = pack(src, tmp_path / "packed")
    # Diffusion's drop_n_last_frames is 7: train episodes 0 and 1 give 13 + 5 frames per epoch.
    b = train([*SMALL_DIFFUSION, f"--dataset.root={root}", "--dataset.eval_split=0.5", "--eval_steps=5",
               "--num_workers=0", "--steps=5", f"--output_dir={tmp_path / 'run'}"], tmp_path / "d.jsonl")
    seen = Counter((e, f) for x in b for e, f in zip(x["episode_index"], x["frame_index"]))
    assert set(seen) == {(0, f) for f in range(13)} | {(1, f) for f in range(5)}
    assert set(seen.values()) == {1}


def test_train_passes_arguments_to_lerobot() -> None:
    run = subprocess.run([*CLI, "train", "--help"], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "--dataset.root" in run.stdout and "--policy.type" in run.stdout
