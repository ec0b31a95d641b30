"""What a source's samples hold, key by key, and whether the sources of a mixture agree on it.

A spec maps each key a source yields to ``(kind, shape, window)``: ``kind`` is the feature dtype
(cameras, video or image, both ``"camera"``: they decode to the same float32 ``(C, H, W)``;
``"camera_uint8"`` with ``return_uint8``; depth maps ``"depth_mm"`` or ``"depth_m"``, their unit),
``shape`` the stored feature shape, ``window`` the key's ``delta_timestamps`` in seconds (each
source's frame offsets divided by its own fps, rounded to µs) or None. Keys in a mixture must
agree on all three: a batch stacks them, and a window that covers other times in another source
(e.g. deltas written as ``k / 30`` for a 10 fps dataset) would silently mean something else.
Pure functions over metadata: no shard is read.
"""

from __future__ import annotations

from typing import Any, Sequence

Spec = dict[str, tuple]


def sample_spec(ds: Any) -> Spec:
    """Spec of a ``LeRobotShardDataset`` (or of anything with a ``spec()`` method, e.g. a transition view)."""
    if hasattr(ds, "spec"):
        return ds.spec()
    meta, fps = ds.meta, ds.meta.fps
    out: Spec = {}
    camera = "camera_uint8" if getattr(ds, "return_uint8", False) else "camera"
    depth = set(meta.depth_keys)
    for key, feat in meta.features.items():
        if key in depth:
            kind = f"depth_{ds.depth_output_unit}"
        else:
            kind = camera if feat.get("dtype") in ("video", "image") else str(feat.get("dtype"))
        d = ds.delta_indices.get(key)
        window = None if d is None else tuple(round(int(k) / fps, 6) for k in d)
        out[key] = (kind, tuple(feat.get("shape", ())), window)
        if d is not None:
            out[f"{key}_is_pad"] = ("bool", (len(d),), window)
    out["task"] = ("str", (), None)
    return out


def _where(i: int, ds: Any) -> str:
    store = getattr(ds, "store", None) or getattr(getattr(ds, "dataset", None), "store", None)
    fps = getattr(getattr(ds, "meta", None), "fps", "?")
    return f"dataset {i} ({getattr(store, 'url', type(ds).__name__)}, fps {fps})"


def check_compatible(datasets: Sequence[Any]) -> tuple[list[str], list[list[str]]]:
    """Keys every source yields, and per source the keys it has that others lack (left out).

    Raises ValueError naming the key and every source's ``(kind, shape, window seconds)`` when a
    shared key disagrees, with what to do about it.
    """
    specs = [sample_spec(d) for d in datasets]
    common = [k for k in specs[0] if all(k in s for s in specs[1:])]
    for key in common:
        seen = {s[key] for s in specs}
        if len(seen) == 1:
            continue
        rows = "; ".join(f"{_where(i, d)}: {s[key]}" for i, (d, s) in enumerate(zip(datasets, specs)))
        windows = {s[key][2] for s in specs}
        lengths = {None if w is None else len(w) for w in windows}
        if len({s[key][:2] for s in specs}) == 1 and len(lengths) == 1 and None not in lengths:
            hint = ("its windows cover different seconds; give every dataset the same delta_timestamps "
                    "in seconds (each resolves them with its own fps)")
        else:
            hint = ("kind, shape or window length differ (a window adds a leading axis); rename the key "
                    "in one dataset (rename=...) or give every dataset the same delta_timestamps for it")
        raise ValueError(f"mix: key {key!r} differs between datasets ({hint}): {rows}")
    dropped = [[k for k in s if k not in common] for s in specs]
    return common, dropped
