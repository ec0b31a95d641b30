"""``MainSetting``: a value the training loop sets that DataLoader workers see, persistent ones too.

Why: DataLoader workers iterate copies of the dataset made when they start. With
``persistent_workers=True`` those copies live across epochs, so a plain attribute set by
``set_epoch`` in the main process never reaches them and every epoch would repeat the first one's
order. The value set in the main process therefore lives in shared memory (a torch tensor after
``share_memory_()``: fork inherits the mapping, spawn pickles it as a handle), and each iteration
reads it when it starts.

Writes made inside a worker (a mixture setting its sources' epochs, ``load_state_dict`` from
StatefulDataLoader) must stay in that worker, or workers would overwrite each other's values: they
go to a worker-local override that the next :meth:`MainSetting.take` returns and clears.
"""

from __future__ import annotations

from typing import Any

import torch


def in_worker() -> bool:
    """True inside a DataLoader worker process."""
    return torch.utils.data.get_worker_info() is not None


class MainSetting:
    """A number or fixed-length list of numbers: set anywhere, read by the next iteration.

    ``value`` fixes the shape (a scalar or a list of fixed length) and ``dtype`` the type
    (``torch.int64`` for epochs, ``torch.float64`` for weights: both exact for Python ints below
    2**63 and Python floats).
    """

    def __init__(self, value: Any, dtype: torch.dtype) -> None:
        self._shared = torch.tensor(value, dtype=dtype).share_memory_()
        self._local: Any = None

    def set(self, value: Any) -> None:
        """From the main process: every worker's next iteration sees ``value``. From a worker:
        only this worker's next iteration does."""
        new = torch.tensor(value, dtype=self._shared.dtype)
        if new.shape != self._shared.shape:
            raise ValueError(f"setting of shape {tuple(self._shared.shape)} given {value!r}")
        if in_worker():
            self._local = new.tolist()
        else:
            self._shared.copy_(new)
            self._local = None

    def take(self) -> Any:
        """The value an iteration starting now follows: this worker's own setting if it made one
        since the last ``take`` (then cleared), else the main process's latest."""
        if self._local is not None:
            value, self._local = self._local, None
            return value
        return self._shared.tolist()
