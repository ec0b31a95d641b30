"""``numpy_collate``: a batch of samples → numpy arrays, for training loops without torch (JAX).

Use it as a DataLoader's ``collate_fn``: workers stack each key into one array, so the training
step receives plain numpy (``jax.device_put(batch)`` goes straight to the accelerator) and never
touches a torch tensor. Tensors and numpy arrays are stacked along a new leading batch axis
(dtype and per-sample shape kept: float32 images ``(B, C, H, W)``, 0-d scalars → ``(B,)``), Python
numbers become 1-d arrays, dicts are collated key by key (nested dicts, e.g. a transition's
``obs``, stay nested), and strings (``task``) stay a list of strings, which numpy-only consumers
can drop or look up (``jax.device_put`` takes arrays, not strings).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def numpy_collate(batch: Sequence[Any]) -> Any:
    """Stack a list of samples (dicts of tensors/arrays/numbers/strings) into numpy arrays.

    Raises ValueError naming the key when samples disagree on keys or per-sample shapes.
    """
    return _collate(batch, "batch")


def _collate(items: Sequence[Any], where: str) -> Any:
    if not items:
        raise ValueError(f"numpy_collate: {where} is empty")
    first = items[0]
    if isinstance(first, Mapping):
        keys = list(first)
        for i, it in enumerate(items):
            if not isinstance(it, Mapping) or set(it) != set(keys):
                got = sorted(it) if isinstance(it, Mapping) else type(it).__name__
                raise ValueError(f"numpy_collate: {where}[{i}] has keys {got}, {where}[0] has {sorted(keys)}")
        return {k: _collate([it[k] for it in items], f"{where}[{k!r}]") for k in keys}
    if isinstance(first, (str, bytes)):
        return list(items)
    if isinstance(first, (list, tuple)) and first and isinstance(first[0], (str, bytes)):
        return [list(x) for x in items]
    arrays = [_to_numpy(x) for x in items]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"numpy_collate: {where} has per-sample shapes {sorted(shapes)}; they must agree to stack")
    return np.stack(arrays)


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # a torch tensor, without importing torch here
        return x.detach().cpu().numpy()
    return np.asarray(x)
