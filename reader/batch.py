"""Batches built by the dataset itself (``LeRobotShardDataset(batch_size=...)``): each camera frame
written once, straight into its batch.

With per-sample output a camera frame is copied twice after decoding: into its sample's tensor,
then by ``default_collate`` into the batch (inside a DataLoader worker, a fresh shared-memory
block). Here the batch's camera tensors are allocated first (in shared memory inside a worker,
so the DataLoader sends them without another copy) and each frame is deinterleaved from the
decoder's output straight into its row; the other keys, small, go through ``default_collate``.
The batch equals ``default_collate`` of the same samples, key for key and bit for bit.

The camera tensors' memory is reused for later batches once nothing holds it, because writing
frames into freshly mapped memory is mostly page faults: cv2.split into a fresh 480x640 row took
0.45 ms, several times the copy itself (``cProfile`` of ``tools/bench_peers.py``'s child,
windows). In the training process (``num_workers=0``) torch's count of a storage's users says when
nothing else holds it (no tensor, view or numpy array of it is left); a loop that holds one batch
while the next is built keeps two sets. In a DataLoader worker the training process says so
itself (``shm_ring.py``).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Iterator, Mapping

import torch
from torch.utils.data import default_collate

from . import io_stats as S
from .shm_ring import WorkerRing


def empty(shape: tuple[int, ...], dtype: torch.dtype, shared: bool) -> torch.Tensor:
    """An uninitialised tensor; with ``shared``, in shared memory from the start (what
    ``default_collate`` does in a worker: ``share_memory_()`` would allocate it twice and copy)."""
    if not shared:
        return torch.empty(shape, dtype=dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    return torch.empty(0, dtype=dtype).set_(torch.UntypedStorage._new_shared(nbytes), 0, shape)


class BatchSlots:
    """Rows of the batch being filled, and the grouping of built samples into batches.

    ``shapes``: per camera key (the builder's names), the shape of one sample's frames;
    ``rename``: stored names → the names samples carry; ``ring``: in a DataLoader worker, its
    shared-memory sets (``shm_ring.py``), None in the training process; ``stats``: where
    :data:`~.io_stats.BATCHES_IN_NEW_MEMORY` is counted. The dataset asks :meth:`out` for the row
    the sample it builds next writes its frames into, then hands the built sample to the
    generator :meth:`batches` (a sample that fails and is skipped is never handed over: its row
    goes to the next one).
    """

    def __init__(self, size: int, shapes: Mapping[str, tuple[int, ...]], dtype: torch.dtype,
                 ring: WorkerRing | None, rename: Mapping[str, str], stats: S.Stats) -> None:
        self.size = size
        self.stats = stats
        self.shapes = dict(shapes)
        self.dtype = dtype
        self.ring = ring
        self.names = {rename.get(k, k): k for k in self.shapes}  # sample key -> buffer key
        self._buffers: dict[str, torch.Tensor] = {}
        self._items: list[dict[str, Any]] = []
        self._handed_out: list[dict[str, torch.Tensor]] = []  # the last batches' buffers, for reuse

    def out(self) -> dict[str, torch.Tensor]:
        """Per camera, the row of the current batch the next sample's frames go into."""
        if not self._buffers and self.shapes:
            self._buffers = self._reusable() or {}
            if not self._buffers:
                self._buffers = {k: empty((self.size, *s), self.dtype, self.ring is not None)
                                 for k, s in self.shapes.items()}
                self.stats.add(S.BATCHES_IN_NEW_MEMORY)
        row = len(self._items)
        return {k: b[row] for k, b in self._buffers.items()}

    def left(self) -> int:
        """Rows of the current batch not yet taken by a handed-over sample."""
        return self.size - len(self._items)

    def rows(self, n: int) -> list[dict[str, torch.Tensor]]:
        """Per camera, the rows of the next ``n`` samples (``n`` ≤ :meth:`left`), for samples built
        out of order (on several threads); they must then be handed over in the order of their rows,
        after :meth:`close_gaps`."""
        if n > self.left():
            raise ValueError(f"internal: {n} rows asked for, {self.left()} left in the batch")
        self.out()
        base = len(self._items)
        return [{k: b[base + j] for k, b in self._buffers.items()} for j in range(n)]

    def close_gaps(self, built: list[dict[str, Any] | None]) -> None:
        """``built``: the samples built into :meth:`rows`, None where one was skipped. Moves the frames
        of the samples after a skipped one up, so that the samples handed over fill consecutive rows."""
        base = dst = len(self._items)
        for j, sample in enumerate(built):
            if sample is None:
                continue
            if dst != base + j:
                for k, b in self._buffers.items():
                    b[dst].copy_(b[base + j])
                    sample[k] = b[dst]
            dst += 1

    def batches(self, samples: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Group the samples (built into the rows :meth:`out` gave) into batches of ``size``; the
        last one may be shorter."""
        for sample in samples:
            self._items.append(sample)
            if len(self._items) == self.size:
                yield self._assemble()
        if self._items:
            yield self._assemble()

    def _reusable(self) -> dict[str, torch.Tensor] | None:
        """Buffers of an earlier batch that nothing outside this object uses any more."""
        if self.ring is not None:
            return self.ring.take()
        for n, buffers in enumerate(self._handed_out):
            if all(_users(b) == _ALONE for b in buffers.values()):
                return self._handed_out.pop(n)
        return None

    def _assemble(self) -> dict[str, Any]:
        items, buffers = self._items, self._buffers
        self._items, self._buffers = [], {}
        if self.ring is None and buffers and _users is not None:
            self._handed_out = [*self._handed_out[-1:], buffers]
        n = len(items)
        rest = default_collate([{k: v for k, v in s.items() if k not in self.names} for s in items])
        batch = {k: (buffers[self.names[k]][:n] if k in self.names else rest[k]) for k in items[0]}
        if self.ring is None or not buffers:
            return batch
        return self.ring.hand_out(batch, [k for k in batch if k in self.names], buffers)


def _storage_users(t: torch.Tensor) -> int:
    return torch._C._storage_Use_Count(t.untyped_storage()._cdata)


#: Users of a tensor's storage (tensors, views, and so numpy arrays of them); None where this torch
#: does not say, and then no buffer is ever reused.
_users = _storage_users if hasattr(torch._C, "_storage_Use_Count") else None
#: What :data:`_users` says of a tensor that nothing else uses.
_ALONE = _users(torch.empty(0)) if _users is not None else None
