"""``lerobot-wds train``: lerobot's own ``lerobot-train`` with the data read from packed shards.

Every argument goes to lerobot's train unchanged (config system, policies, processors, optimizer,
logging, checkpoints, ``--resume=true``); ``--dataset.root`` names the packed directory or URL and
``--dataset.repo_id`` is only a label. One option is ours and is removed before lerobot parses the
rest: ``--wds.storage_options=<JSON>`` (fsspec options, over those in the environment variable
``LEROBOT_WDS_STORAGE_OPTIONS``; credentials also come the usual fsspec way, e.g. ``AWS_*``).

What is patched, and why that is all: lerobot's dataset factory builds its metadata and datasets
through the names ``LeRobotDatasetMetadata``, ``LeRobotDataset`` and ``StreamingLeRobotDataset``;
they build ours instead, so lerobot's own ``make_dataset`` and ``make_train_eval_datasets`` run
(delta timestamps, image transforms, ImageNet stats, the eval split by episodes).
``LeRobotShardDataset`` answers lerobot's dataset contract (``meta``, ``num_frames``,
``num_episodes``, ``episodes``, ``drop_n_last_frames``). Two wrappers around names of the training
script: the one that makes the datasets marks the run as streaming (an iterable dataset takes no
sampler: it shuffles itself) and, on ``--resume=true``, loads the data position; the one that saves
checkpoints writes the data position next to lerobot's training state.

Batches: while the training runs, ``torch.utils.data.DataLoader`` is a subclass that, given a
packed dataset, a ``batch_size`` and the default collate (what lerobot asks for, unless the dataset
has language columns), has the dataset build the batches itself (``batch_size`` of
``LeRobotShardDataset``: each camera frame written once, into reused shared memory; reader/batch.py)
and passes them through (``batch_size=None``). The batches are the same, key for key and bit for bit,
and so is every worker's share of them, so the data position below holds for both. Every other
DataLoader is torch's, unchanged.

Several processes (``accelerate launch``, ``torchrun``): each reads its own share of every epoch
(the dataset's rank and world size are accelerate's process index and count; the shares are
equal: fewer frames than processes are left out of an epoch), and accelerate only places its
batches on the device: a wrapper around ``Accelerator.prepare_data_loader`` keeps accelerate from
dispatching our datasets' batches from the main process, its default for an iterable dataset,
which has one process load for all and cannot put lerobot's ``task`` strings of several batches
together (accelerate's ``concatenate`` raises ``TypeError``).

Data position: what the training loop consumed, per DataLoader worker, computed from the step
count (as lerobot's own ``compute_sampler_state`` does for its sampler), not from the workers,
which run ahead of the loop. A DataLoader takes batches from its workers in turn; a worker's slot
of an epoch is known from the plan, so ``step`` batches fix how many samples each worker gave
(:func:`advance`). Every process takes one batch a step from loaders of equal shares, so the
position is the same in every process. The resumed run continues each worker where the loop
stopped using it: the stop and the resumed run together cover the epoch exactly once.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .dataset import LeRobotShardDataset
from .epoch_plan import slot_range
from .meta import DatasetMeta
from .storage import Store
from .world import World

#: The data position's file inside a lerobot checkpoint's ``training_state/``.
POSITION_FILE = "lerobot_wds_data_position.json"
ENV_STORAGE_OPTIONS = "LEROBOT_WDS_STORAGE_OPTIONS"
OPTION = "--wds.storage_options"


class TrainShardDataset(LeRobotShardDataset):
    """The training set of a ``lerobot-wds train`` run.

    accelerate numbers the passes over the DataLoader from 0 in every process and calls
    ``set_epoch`` with that number; a resumed run's first pass is the checkpoint's epoch, so
    passes are counted from ``first_epoch``.
    """

    first_epoch = 0

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(self.first_epoch + int(epoch))


def worker_sizes(dataset: LeRobotShardDataset, num_workers: int) -> list[int]:
    """Samples each DataLoader worker yields per epoch (``num_workers=0``: the main process)."""
    total, w = len(dataset) * dataset.world.world_size, max(num_workers, 1)
    return [hi - lo for lo, hi in (slot_range(total, World(dataset.world.rank, dataset.world.world_size, i, w))
                                   for i in range(w))]


def advance(epoch: int, yielded: Sequence[int], steps: int, sizes: Sequence[int],
            batch_size: int) -> tuple[int, list[int]]:
    """The data position after ``steps`` more training steps from (``epoch``, samples ``yielded``
    per worker). Each step takes one batch; a DataLoader takes batches from the workers that still
    have one, in turn from worker 0, and a worker's last batch of an epoch may be short."""
    yielded = list(yielded)
    if len(yielded) != len(sizes):
        raise ValueError(f"data position has {len(yielded)} workers, the DataLoader {len(sizes)}")
    full = sum(math.ceil(n / batch_size) for n in sizes)
    if full == 0:
        raise ValueError("the dataset yields no batches")
    while steps > 0:
        left = [math.ceil((n - y) / batch_size) for n, y in zip(sizes, yielded)]
        in_pass = sum(left)
        if steps >= in_pass:  # this epoch ends: go on with whole epochs
            steps -= in_pass
            epoch += 1 + steps // full
            steps %= full
            yielded = [0] * len(sizes)
            continue
        batches, taken = steps, [0] * len(sizes)
        while batches:
            for w in range(len(sizes)):
                if batches and taken[w] < left[w]:
                    taken[w] += 1
                    batches -= 1
        yielded = [min(y + t * batch_size, n) for y, t, n in zip(yielded, taken, sizes)]
        steps = 0
    return epoch, yielded


class _Run:
    """What the patched names need to know about the run lerobot is setting up."""

    cfg: Any = None
    storage_options: dict[str, Any] = {}
    dataset: TrainShardDataset | None = None
    #: (step, epoch, yielded per worker) where this process's run started.
    start: tuple[int, int, list[int]] = (0, 0, [0])


def _store(root: Any) -> Store:
    if root is None:
        raise ValueError("lerobot-wds train reads a packed dataset: give --dataset.root=<packed directory or URL>")
    return Store(str(root), _Run.storage_options)


def _metadata(repo_id: str, root: Any = None, **_: Any) -> DatasetMeta:
    store = _store(root)
    meta = DatasetMeta(store.read_manifest(), where=store.url)
    meta.repo_id = repo_id
    return meta


def _dataset(repo_id: str, root: Any = None, *, episodes: Sequence[int] | None = None,
             delta_timestamps: Mapping[str, Sequence[float]] | None = None, image_transforms: Any = None,
             tolerance_s: float = 1e-4, return_uint8: bool = True, depth_output_unit: str = "mm",
             **_: Any) -> TrainShardDataset:
    """``LeRobotDataset(...)``/``StreamingLeRobotDataset(...)`` as lerobot's factory calls them: this
    process's share (see the module docstring)."""
    cfg = _Run.cfg
    rank, processes = _process()
    ds = TrainShardDataset(
        _store(root), delta_timestamps=delta_timestamps, episodes=episodes, image_transforms=image_transforms,
        tolerance_s=tolerance_s, return_uint8=return_uint8, depth_output_unit=depth_output_unit,
        seed=cfg.seed if cfg.seed is not None else 0,
        rank=rank, world_size=processes,
        drop_n_last_frames=getattr(cfg.trainable_config, "drop_n_last_frames", 0) or 0,
    )
    ds.meta.repo_id = repo_id
    return ds


def _position_file(checkpoint_dir: Path) -> Path:
    return Path(checkpoint_dir) / "training_state" / POSITION_FILE


def _load_position(cfg: Any, ds: TrainShardDataset) -> None:
    path = _position_file(cfg.checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no lerobot-wds data position in this checkpoint (was it written by lerobot-wds train?); "
            "resume it with the command that wrote it"
        )
    pos = json.loads(path.read_text())
    now = {"batch_size": cfg.batch_size, "num_workers": cfg.num_workers, "num_processes": ds.world.world_size}
    diff = {k: (pos.get(k), v) for k, v in now.items() if pos.get(k) != v}
    if diff:
        raise ValueError(f"{path}: the checkpoint was written with other settings (saved, now): {diff}; "
                         "resume with the saved ones to continue the data exactly")
    ds.load_state_dict({"version": pos["version"], "epoch": pos["epoch"], "yielded": pos["yielded"],
                        "slot": [ds.world.rank, ds.world.world_size, None, max(cfg.num_workers, 1)],
                        "config": pos["config"]})
    ds.first_epoch = int(pos["epoch"])
    _Run.start = (int(pos["step"]), int(pos["epoch"]), list(pos["yielded"]))


def _process() -> tuple[int, int]:
    """This process's index and the number of processes, as accelerate counts them."""
    from accelerate import PartialState

    state = PartialState()
    return state.process_index, state.num_processes


def position_at(step: int) -> dict[str, Any]:
    """The data position after ``step`` training steps of this run (what a checkpoint stores)."""
    ds, cfg = _Run.dataset, _Run.cfg
    start_step, epoch, yielded = _Run.start
    epoch, yielded = advance(epoch, yielded, step - start_step, worker_sizes(ds, cfg.num_workers), cfg.batch_size)
    return {"version": ds.state_dict()["version"], "step": step, "epoch": epoch, "yielded": yielded,
            "batch_size": cfg.batch_size, "num_workers": cfg.num_workers, "num_processes": ds.world.world_size,
            "config": ds._config()}


def _batching_loader(base: type) -> type:
    """A subclass of the DataLoader class ``base`` whose loaders of a packed dataset with lerobot's
    batch settings get their batches from the dataset (see the module docstring)."""

    class DataLoader(base):  # type: ignore[misc, valid-type]
        _lerobot_wds = True

        def __init__(self, dataset: Any, *args: Any, **kwargs: Any) -> None:
            size = kwargs.get("batch_size")
            if (isinstance(dataset, LeRobotShardDataset) and dataset.batch_size is None and not args
                    and isinstance(size, int) and size > 0 and not kwargs.get("drop_last")
                    and all(kwargs.get(k) is None for k in ("collate_fn", "sampler", "batch_sampler"))):
                dataset.batch_size, kwargs["batch_size"] = size, None
            super().__init__(dataset, *args, **kwargs)

    DataLoader.__qualname__ = DataLoader.__name__ = base.__name__
    DataLoader.__module__ = __name__
    return DataLoader


def _per_process(prepare: Callable[..., Any]) -> Callable[..., Any]:
    """``Accelerator.prepare_data_loader`` that prepares loaders of our datasets for this process
    alone: batches placed on the device, neither dispatched nor split (see the module docstring)."""

    @functools.wraps(prepare)
    def prepare_data_loader(self: Any, data_loader: Any, device_placement: bool | None = None,
                            slice_fn_for_dispatch: Any = None) -> Any:
        if (not isinstance(getattr(data_loader, "dataset", None), LeRobotShardDataset)
                or getattr(data_loader, "_is_accelerate_prepared", False)):
            return prepare(self, data_loader, device_placement, slice_fn_for_dispatch)
        from accelerate.data_loader import prepare_data_loader as prepare_alone
        from accelerate.utils import DistributedType

        if device_placement is None:
            device_placement = self.device_placement and self.distributed_type != DistributedType.XLA
        loader = prepare_alone(data_loader, self.device, num_processes=1, process_index=0,
                               put_on_device=device_placement, dispatch_batches=False,
                               non_blocking=self.non_blocking)
        self._dataloaders.append(loader)
        return loader

    prepare_data_loader._lerobot_wds = True  # type: ignore[attr-defined]
    return prepare_data_loader


def install() -> None:
    """Point lerobot's dataset factory and training script at packed shards (see the module docstring)."""
    from lerobot.datasets import factory
    from lerobot.scripts import lerobot_train as script

    factory.LeRobotDatasetMetadata = _metadata
    factory.LeRobotDataset = _dataset
    factory.StreamingLeRobotDataset = _dataset
    make_datasets, save_checkpoint = script.make_train_eval_datasets, script.save_checkpoint

    def make_train_eval_datasets(cfg: Any) -> Any:
        _Run.cfg = cfg
        train, evaluation = make_datasets(cfg)
        cfg.dataset.streaming = True  # an iterable dataset: no sampler, it shuffles itself
        _Run.dataset = train
        _Run.start = (0, 0, [0] * max(cfg.num_workers, 1))
        if cfg.resume:
            _load_position(cfg, train)
        return train, evaluation

    def save_checkpoint_and_position(checkpoint_dir: Path, step: int, *args: Any, **kwargs: Any) -> Any:
        out = save_checkpoint(checkpoint_dir, step, *args, **kwargs)
        path = _position_file(checkpoint_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(position_at(step), indent=1) + "\n")
        return out

    script.make_train_eval_datasets = make_train_eval_datasets
    script.save_checkpoint = save_checkpoint_and_position
    data = script.torch.utils.data
    if not getattr(data.DataLoader, "_lerobot_wds", False):
        data.DataLoader = _batching_loader(data.DataLoader)
    from accelerate import Accelerator

    if not getattr(Accelerator.prepare_data_loader, "_lerobot_wds", False):
        Accelerator.prepare_data_loader = _per_process(Accelerator.prepare_data_loader)


def split_argv(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """lerobot's arguments (unchanged, in order) and the storage options (environment, then ours)."""
    opts: dict[str, Any] = json.loads(os.environ.get(ENV_STORAGE_OPTIONS) or "{}")
    rest, it = [], iter(argv)
    for a in it:
        if a == OPTION or a.startswith(OPTION + "="):
            text = a.split("=", 1)[1] if "=" in a else next(it, "")
            try:
                opts.update(json.loads(text))
            except json.JSONDecodeError as e:
                raise ValueError(f"{OPTION}={text!r} is not a JSON object ({e}); e.g. {OPTION}='{{\"anon\": true}}'") from e
        else:
            rest.append(a)
    return rest, opts


def main(argv: Sequence[str] | None = None) -> int:
    """``lerobot-wds train ARGS...``: lerobot-train's ``main`` on packed shards."""
    rest, _Run.storage_options = split_argv(sys.argv[1:] if argv is None else argv)
    try:
        from lerobot.scripts import lerobot_train as script
    except ImportError as e:
        raise ImportError(
            f"lerobot-wds train runs lerobot's training script, which does not import here ({e}); "
            "install lerobot with its training extras: pip install 'lerobot[training]'"
        ) from e
    install()
    sys.argv = ["lerobot-train", *rest]
    script.main()
    return 0
