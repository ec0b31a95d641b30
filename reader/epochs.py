"""Epochs and exact resume: the one protocol ``LeRobotShardDataset`` and ``MixedDataset`` share.

An iteration follows one epoch, and its order is a pure function of (seed, epoch, slot). Which
epoch:

* ``set_epoch(e)`` decides: the next iteration follows ``e`` (called in the main process it reaches
  DataLoader workers, persistent ones too; called in a worker, only that worker).
* Without it every new iteration is the next epoch, counted per DataLoader worker in shared
  memory (:class:`EpochCounter`), so fresh workers of each epoch and persistent workers agree,
  and a loop that never calls ``set_epoch`` (lerobot-train's does not) still sees a new order.
* ``load_state_dict(state)`` makes the next iteration continue ``state``'s epoch where it stopped;
  the ones after it follow the next epochs.

The state of one (rank, worker) slot is ``{"version", "epoch", "yielded", "slot", "config", "layout"}``:
the epoch, the samples that slot yielded, the slot, and the settings the order depends on (a
mismatch on load raises). ``yielded`` may instead be a list with one count per DataLoader worker
(``slot`` then None): a training loop that counts what it consumed from each worker saves that
(see ``lerobot_wds/reader/lerobot_train.py``); each worker takes its own count.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from ..format import whole_number
from .epoch_plan import slot_range
from .shared import in_worker
from .world import World

#: 4: the pool draws its episodes in rounds while episodes wait to enter (3: each draw uniformly);
#: 3: the pool picks among its episodes uniformly while episodes wait to enter (2: always in
#: proportion to remaining frames); 2: each episode drawn in file order from a random start (1: by
#: shuffled chunks of 8), few episodes sliced over workers. An older state would resume into
#: another order.
STATE_VERSION = 4
#: Workers the shared epoch counter has room for (one slot each, plus one for the main process).
MAX_WORKERS = 1024


class EpochCounter:
    """The epoch each iteration follows: the last ``set`` plus the iterations started since, per
    DataLoader worker (and separately for the main process), in shared memory."""

    def __init__(self) -> None:
        # Row 0: epoch offset per slot; row 1: iterations started per slot. Column MAX_WORKERS is
        # the main process. A worker writes only its own column, so workers never race.
        self._shared = torch.zeros((2, MAX_WORKERS + 1), dtype=torch.int64).share_memory_()

    @staticmethod
    def _column() -> int:
        info = torch.utils.data.get_worker_info()
        if info is None:
            return MAX_WORKERS
        if info.id >= MAX_WORKERS:
            raise ValueError(f"DataLoader worker {info.id}: at most {MAX_WORKERS} workers are supported")
        return info.id

    def set(self, epoch: int) -> None:
        """From the main process: every slot's next iteration follows ``epoch``. From a worker: only
        that worker's."""
        if in_worker():
            c = self._column()
            self._shared[0, c] = int(epoch) - int(self._shared[1, c])
        else:
            self._shared[0].fill_(int(epoch))
            self._shared[1].zero_()

    def take(self) -> int:
        """The epoch of an iteration starting now in this process; the next ``take`` gives the next one."""
        c = self._column()
        epoch = int(self._shared[0, c]) + int(self._shared[1, c])
        self._shared[1, c] += 1
        return epoch


class Resumable:
    """``set_epoch``/``state_dict``/``load_state_dict`` and the start of an iteration.

    Subclasses call :meth:`_init_epochs` in ``__init__``, give :meth:`_config` (the settings the
    order depends on), count yielded samples in ``self._yielded``, and start each iteration with
    :meth:`_begin`. ``_extra_state``/``_load_extra`` carry what a subclass adds (a mixture: its
    sources' states).
    """

    _what = "resume state"

    def _init_epochs(self) -> None:
        #: Epoch of the iteration in progress (or of the loaded state): what state_dict() reports.
        self.epoch = 0
        self._epochs = EpochCounter()
        self._resume: dict[str, Any] | None = None
        self._yielded = 0
        self._slot: tuple[int, int, int, int] | None = None

    def _config(self) -> dict[str, Any]:
        raise NotImplementedError

    def _epoch_samples(self) -> int:
        """Samples an epoch yields over all ranks and workers, before they are split into slots."""
        raise NotImplementedError

    def _layout(self) -> str | None:
        """Fingerprint of the data the order is planned from (None: nothing to check)."""
        return None

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra(self, state: Mapping[str, Any]) -> None:
        pass

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch the next iteration follows (see the module docstring). A loaded resume
        state is kept when it is for this epoch (so ``set_epoch(e)`` at the top of a resumed epoch
        loop is safe) and forgotten otherwise."""
        if self._resume is not None and int(self._resume["epoch"]) != int(epoch):
            self._resume = None
        self.epoch = int(epoch)
        self._epochs.set(self.epoch)

    def state_dict(self) -> dict[str, Any]:
        """Epoch and samples yielded so far by this slot (rank, worker), plus the settings the
        order depends on. Small and exact."""
        return {"version": STATE_VERSION, "epoch": self.epoch, "yielded": self._yielded,
                "slot": list(self._slot) if self._slot else None, "config": self._config(),
                "layout": self._layout(), **self._extra_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Make the next iteration continue the epoch recorded in ``state`` where it stopped."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"{self._what} version {state.get('version')!r}; this reader reads {STATE_VERSION}: the state "
                "comes from another version of lerobot-wds, whose order differs (resuming would repeat and "
                "drop samples); start the epoch afresh"
            )
        saved, layout = state.get("layout"), self._layout()
        if saved is not None and saved != layout:
            raise ValueError(
                f"{self._what} was taken on another pack (layout {saved}, this one {layout}: other shards "
                "or episodes, e.g. another --shard-size); resume on the pack the state was taken on, or "
                "start the epoch afresh"
            )
        now = self._config()
        diff = {k: (v, now.get(k)) for k, v in state.get("config", {}).items() if now.get(k) != v}
        if diff:
            raise ValueError(
                f"{self._what} was taken with other settings (saved, now): "
                + ", ".join(f"{k}={a!r}, {b!r}" for k, (a, b) in diff.items())
                + "; construct it with the saved settings to resume exactly"
            )
        self.epoch = int(state["epoch"])
        self._epochs.set(self.epoch)  # the iteration that takes this epoch resumes; later ones follow on
        self._resume = dict(state)
        # Until the next iteration starts, state_dict() must report this state unchanged
        # (StatefulDataLoader snapshots workers right after loading).
        self._yielded = state["yielded"] if isinstance(state["yielded"], int) else 0
        self._slot = tuple(state["slot"]) if state.get("slot") else None
        self._load_extra(state)

    def _begin(self, world: World) -> tuple[int, int, dict[str, Any] | None]:
        """Start an iteration in ``world``'s slot: (epoch, samples to skip, the resume state used
        or None). Taken when ``iter()`` is called, not at the first ``next``: StatefulDataLoader
        snapshots ``state_dict()`` right after ``iter()``."""
        slot = (world.rank, world.world_size, world.worker, world.num_workers)
        epoch, skip = self._epochs.take(), 0
        resume, self._resume = self._resume, None
        if resume is not None and int(resume["epoch"]) != epoch:
            # A state loaded in the main process stays there; only the iteration of its epoch
            # (in every worker) resumes from it, later epochs' fresh workers start afresh.
            resume = None
        if resume is not None:
            saved = resume.get("slot")
            yielded = resume["yielded"]
            if isinstance(yielded, (list, tuple)):
                if len(yielded) != world.num_workers or (saved and tuple(saved[:2]) != slot[:2]):
                    raise ValueError(
                        f"{self._what} holds counts for {len(yielded)} DataLoader workers of ranks {saved}; "
                        f"this iterator is {slot}; resume with the same ranks and num_workers"
                    )
                yielded = yielded[world.worker]
            elif saved is not None and tuple(saved) != slot:
                raise ValueError(
                    f"{self._what} belongs to (rank, world_size, worker, num_workers)={tuple(saved)}, "
                    f"this iterator is {slot}; resume with the same ranks and num_workers"
                )
            lo, hi = slot_range(self._epoch_samples(), world)
            if not whole_number(yielded, 0, hi - lo):
                raise ValueError(
                    f"{self._what} says {yielded!r} samples were yielded, but (rank, world_size, worker, "
                    f"num_workers)={slot} yields {hi - lo} per epoch: the state is damaged or not from this "
                    "dataset; start the epoch afresh"
                )
            skip = yielded
        self.epoch, self._slot, self._yielded = epoch, slot, skip
        return epoch, skip, resume
