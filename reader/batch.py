"""Batches built by the dataset itself (``LeRobotShardDataset(batch_size=...)``): each camera frame
written once, straight into its batch.

With per-sample output a camera frame is copied twice after decoding: into its sample's tensor,
then by ``default_collate`` into the batch (inside a DataLoader worker, a fresh shared-memory
block). Here the batch's camera tensors are allocated first (in shared memory inside a worker,
so the DataLoader sends them without another copy) and each frame is written from the decoder's
output straight into its row (deinterleaved from torchcodec's layout, or the shared decoder's
planes copied); the other keys, small, go through ``default_collate``
(inside a worker stacked into one more shared block: :func:`collate_in_one_block`). The batch
equals ``default_collate`` of the same samples, key for key and bit for bit.

A sample built into a batch is never handed out on its own, so its small values need not be
tensors of their own: its numbers are :class:`Scalar`, each key's made one tensor per batch
(:func:`collate`), and its rows are views of the episode's columns, copied once, by the stack
(``sample.py``); its camera entries are its rows of the batch, handed to the decoder as one view
per frame made in one call (:meth:`BatchSlots.rows`). Against a 0-d tensor per number, a clone per
row and a view made per frame in Python: with windows, 1,147 / 1,147 / 1,156 samples/s against
1,127 / 1,105 / 1,067 at 0 workers and 1,163 / 1,139 / 1,161 against 1,150 / 1,136 / 1,152 at 2, CPU
per sample -1 to -7 % and -1 to -2 % (three interleaved A/B rounds of ``tools/bench_cpu.py
bench_out/peers/packed --workers N --batched --windows``).

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
from collections import deque
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

import torch
from torch.utils.data import default_collate

from ..errors import UsageError
from . import io_stats as S
from .shm_ring import WorkerRing


def empty_set(shapes: Mapping[str, tuple[int, ...]], dtype: torch.dtype, shared: bool) -> dict[str, torch.Tensor]:
    """Uninitialised tensors of these shapes; with ``shared``, views of one block of shared memory
    from the start (``share_memory_()`` would allocate each twice and copy; one block crosses to
    the training process with one file descriptor, see :func:`collate_in_one_block`)."""
    if not shared:
        return {k: torch.empty(shape, dtype=dtype) for k, shape in shapes.items()}
    counts = {k: math.prod(shape) for k, shape in shapes.items()}
    block = torch.UntypedStorage._new_shared(sum(counts.values()) * dtype.itemsize)
    out, offset = {}, 0
    for k, shape in shapes.items():
        out[k] = torch.empty(0, dtype=dtype).set_(block, offset, shape)
        offset += counts[k]
    return out


class BatchSlots:
    """Rows of the batch being filled, and the grouping of built samples into batches.

    ``shapes``: per camera key (the builder's names), the shape of one sample's frames;
    ``rename``: stored names → the names samples carry; ``ring``: in a DataLoader worker, its
    shared-memory sets (``shm_ring.py``), None in the training process; ``stats``: where
    :data:`~.io_stats.BATCHES_IN_NEW_MEMORY` is counted; ``keep``: in the training process, how
    many of the last handed-out batches' sets of rows are kept for reuse (2: the loop's batch and
    the one before it, which the loop may still hold while the next is built; 3 when batches are
    built one ahead, reader/one_ahead.py). The dataset asks :meth:`rows` for the rows the
    samples it builds next write their frames into, then hands the built samples to the
    generator :meth:`batches` (a sample that fails and is skipped is never handed over:
    :meth:`close_gaps` moves the later ones up).
    """

    def __init__(self, size: int, shapes: Mapping[str, tuple[int, ...]], dtype: torch.dtype,
                 ring: WorkerRing | None, rename: Mapping[str, str], stats: S.Stats, keep: int = 2) -> None:
        self.size = size
        self.keep = keep
        self.stats = stats
        self.shapes = dict(shapes)
        self.dtype = dtype
        self.ring = ring
        self.names = {rename.get(k, k): k for k in self.shapes}  # sample key -> buffer key
        # Camera tensors of the batches whose rows :meth:`rows` gave out and that are not assembled
        # yet: the batch being filled by handed-over samples first, then the next one, where its
        # rows were given out before this one was full (runs built ahead, reader/dataset.py).
        self._sets: deque[dict[str, torch.Tensor]] = deque()
        self._items: list[dict[str, Any]] = []
        self._ahead = 0  # rows given out whose samples are not handed over (or skipped) yet
        self._handed_out: list[dict[str, torch.Tensor]] = []  # the last batches' buffers, for reuse

    def _new_set(self) -> dict[str, torch.Tensor]:
        """Camera tensors for a batch: an earlier batch's that nothing holds any more, or new ones."""
        if not self.shapes:
            return {}
        reused = self._reusable()
        if reused:
            return reused
        shapes = {k: (self.size, *s) for k, s in self.shapes.items()}
        try:
            fresh = empty_set(shapes, self.dtype, self.ring is not None)
        except (RuntimeError, OSError) as e:  # out of memory, or of shared memory
            nbytes = sum(math.prod(s) for s in shapes.values()) * self.dtype.itemsize
            raise UsageError(
                f"cannot allocate a batch's camera frames, {nbytes / 2**30:.1f} GiB for "
                f"{', '.join(f'{k} {tuple(s)}' for k, s in shapes.items())} ({e}); lower batch_size, "
                "or check the camera sizes in the manifest's 'videos' entries"
            ) from e
        self.stats.add(S.BATCHES_IN_NEW_MEMORY)
        return fresh

    def left(self) -> int:
        """Rows of the batch the next :meth:`rows` call fills that no sample has taken yet."""
        return self.size - (len(self._items) + self._ahead) % self.size

    def rows(self, n: int) -> list[dict[str, torch.Tensor]]:
        """Per camera, the rows of the next ``n`` samples (``n`` ≤ :meth:`left`), for samples built
        out of order (on several threads); they must then be handed over in the order of their rows,
        after :meth:`close_gaps`. Rows may be asked for before the samples of the rows given earlier
        are handed over: those of a full batch's then come from the next batch's tensors."""
        if n > self.left():
            raise ValueError(f"internal: {n} rows asked for, {self.left()} left in the batch")
        index, base = divmod(len(self._items) + self._ahead, self.size)
        while len(self._sets) <= index:
            self._sets.append(self._new_set())
        self._ahead += n
        views = {k: b[base:base + n].unbind(0) for k, b in self._sets[index].items()}  # one call a camera
        return [{k: v[j] for k, v in views.items()} for j in range(n)]

    def close_gaps(self, built: list[dict[str, Any] | None]) -> None:
        """``built``: the samples built into the oldest :meth:`rows` not closed yet, None where one was
        skipped; they are handed over next. Moves the frames of the samples after a skipped one up, so
        that the samples handed over fill consecutive rows. Rows given out after these must not be
        (a skip moves the rows that follow it)."""
        if None in built and self._ahead != len(built):
            raise ValueError("internal: a sample was skipped in rows given out before later ones")
        self._ahead -= len(built)
        base = dst = len(self._items)
        for j, sample in enumerate(built):
            if sample is None:
                continue
            if dst != base + j:
                for k, b in self._sets[0].items():
                    b[dst].copy_(b[base + j])
                    sample[k] = b[dst]
            dst += 1

    def batches(self, samples: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Group the samples (built into the rows :meth:`rows` gave) into batches of ``size``; the
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
        items, buffers = self._items, (self._sets.popleft() if self._sets else {})
        self._items = []
        if self.ring is None and buffers and _users is not None:
            self._handed_out = [*self._handed_out[max(len(self._handed_out) + 1 - self.keep, 0):], buffers]
        n = len(items)
        rest = collate_in_one_block(items, self.names) if self.ring is not None else collate(items, self.names)
        batch = {k: (buffers[self.names[k]][:n] if k in self.names else rest[k]) for k in items[0]}
        if self.ring is None or not buffers:
            return batch
        return self.ring.hand_out(batch, [k for k in batch if k in self.names], buffers)


class Scalar(NamedTuple):
    """A sample's number that stands for the 0-d tensor ``torch.scalar_tensor(value, dtype=dtype)``
    in a batch: :func:`collate` makes each key's one tensor at once."""

    value: int | float | bool
    dtype: torch.dtype


def _scalar_column(values: list[Any]) -> torch.dtype | None:
    """The dtype of a key's values when all are :class:`Scalar` of one dtype (one tensor at once), else None."""
    dtype = values[0].dtype if isinstance(values[0], Scalar) else None
    if dtype is None or not all(isinstance(v, Scalar) and v.dtype == dtype for v in values):
        return None
    return dtype


def _as_tensors(values: list[Any]) -> list[Any]:
    """The values with each :class:`Scalar` the 0-d tensor it stands for."""
    return [torch.scalar_tensor(v.value, dtype=v.dtype) if isinstance(v, Scalar) else v for v in values]


def collate(samples: list[dict[str, Any]], skip: Iterable[str] = ()) -> dict[str, Any]:
    """``default_collate`` of the samples' keys but ``skip``, each :class:`Scalar` standing for its
    0-d tensor: a key whose values are all :class:`Scalar` of one dtype made one tensor at once."""
    out = {}
    for k in samples[0]:
        if k in skip:
            continue
        values = [s[k] for s in samples]
        dtype = _scalar_column(values)
        out[k] = (torch.tensor([v.value for v in values], dtype=dtype) if dtype is not None
                  else default_collate(_as_tensors(values)))
    return out


def collate_in_one_block(samples: list[dict[str, Any]], skip: Iterable[str] = ()) -> dict[str, Any]:
    """:func:`collate` of the samples' keys but ``skip`` (the same keys, values, dtypes and shapes),
    with every key whose values are CPU tensors of one dtype and shape, or :class:`Scalar` of one
    dtype, stacked into a view of one shared-memory block.

    In a DataLoader worker ``default_collate`` gives each such key a shared-memory block of its
    own, and the training process then fetches one file descriptor per block for every batch, each
    over a socket connection of its own to the worker. Views of one block travel with one: a batch
    of the peers benchmark with windows (9 small keys, 2 cameras, the ring's table) sends 3
    descriptors instead of 12, with :func:`empty_set` putting the cameras in one block.
    Other keys (strings, lists, numbers) go through ``default_collate``.
    """
    layout, out, nbytes = [], {}, 0
    for k, v in samples[0].items():
        if k in skip:
            continue
        values = [s[k] for s in samples]
        dtype = _scalar_column(values)
        if dtype is not None:
            shape: tuple[int, ...] = ()
        elif isinstance(v, torch.Tensor) and v.device.type == "cpu" and all(
                isinstance(x, torch.Tensor) and x.dtype == v.dtype and x.shape == v.shape
                and x.device.type == "cpu" for x in values):
            dtype, shape = v.dtype, tuple(v.shape)
        else:
            out[k] = default_collate(_as_tensors(values))
            continue
        nbytes = -(-nbytes // _ALIGN) * _ALIGN
        layout.append((k, values, dtype, shape, nbytes))
        nbytes += len(samples) * math.prod(shape) * dtype.itemsize
    if nbytes:
        block = torch.UntypedStorage._new_shared(nbytes)
        for k, values, dtype, shape, offset in layout:
            rows = torch.empty(0, dtype=dtype).set_(block, offset // dtype.itemsize, (len(samples), *shape))
            if isinstance(values[0], Scalar):
                out[k] = rows.copy_(torch.tensor([v.value for v in values], dtype=dtype))
            else:
                out[k] = torch.stack(values, out=rows)
    else:  # nothing to stack but empty tensors: default_collate's own
        out.update({k: default_collate(_as_tensors(values)) for k, values, *_ in layout})
    return {k: out[k] for k in samples[0] if k not in skip}


#: Byte alignment of each key's rows in :func:`collate_in_one_block`'s block.
_ALIGN = 64


def _storage_users(t: torch.Tensor) -> int:
    return torch._C._storage_Use_Count(t.untyped_storage()._cdata)


#: Users of a tensor's storage (tensors, views, and so numpy arrays of them); None where this torch
#: does not say, and then no buffer is ever reused.
_users = _storage_users if hasattr(torch._C, "_storage_Use_Count") else None
#: What :data:`_users` says of a tensor that nothing else uses.
_ALONE = _users(torch.empty(0)) if _users is not None else None
