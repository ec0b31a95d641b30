"""Transition view: ``(obs, action, reward, next_obs, done)`` per frame, for RL training loops.

Built on the dataset's delta windows rather than beside them: every observation key gets the
window ``[0, 1/fps]`` seconds (frame offsets ``[0, 1]``, see ``window.py``), so ``obs`` and
``next_obs`` are the two rows of one window of the in-pool episode, decoded by the same code and
as exact as any window (video frames bit-identical to LeRobot's). ``next_obs`` is the next frame
of the same episode; at an episode's last frame the window is clamped, so ``next_obs`` is that
frame itself, and ``done`` is True exactly there (the window's padding flag). ``done`` marks the
end of the recorded episode; whether that is a true terminal or a time-limit truncation is not in
LeRobot's format (a ``next.done`` column, when present, passes through unchanged).

Order, epochs, ranks, workers and exact resume are the wrapped dataset's: this view only reshapes
samples, so a transition view can also be a source of ``lerobot_wds.reader.mix``.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import torch
from torch.utils.data import IterableDataset

from .meta import DatasetMeta
from .mixspec import Spec, sample_spec
from .storage import Store

#: Reward columns looked for, in this order, when ``reward_key="auto"`` (LeRobot writes ``next.reward``).
REWARD_KEYS = ("next.reward", "reward")


class LeRobotTransitions(IterableDataset):
    """Transitions of a packed dataset: ``{"obs": {key: x_t}, "next_obs": {key: x_t+1}, "action",
    "reward" (when the dataset has one), "done" (bool, 0-d), ...}``, plus the frame's other columns
    (``index``, ``episode_index``, ``frame_index``, ``timestamp``, ``task``, ...) unchanged.

    ``obs_keys`` default to every feature named ``observation.*`` (after ``rename``). ``reward_key``
    is a feature name, None, or ``"auto"`` (first of :data:`REWARD_KEYS` the dataset has). Every
    other keyword goes to ``LeRobotShardDataset`` (``delta_timestamps`` may window the action, e.g.
    action chunks, but not an observation key).
    """

    def __init__(self, url: str | Store, *, obs_keys: Sequence[str] | None = None, action_key: str = "action",
                 reward_key: str | None = "auto", storage_options: Mapping[str, Any] | None = None,
                 **dataset_kwargs: Any) -> None:
        from .dataset import LeRobotShardDataset

        super().__init__()
        if dataset_kwargs.get("batch_size") is not None:
            raise ValueError("LeRobotTransitions yields single transitions; batch them with the DataLoader (no batch_size)")
        store = url if isinstance(url, Store) else Store(url, storage_options)
        manifest = store.read_manifest([] if dataset_kwargs.get("on_error") == "skip" else None)
        meta = DatasetMeta(manifest, rename=dataset_kwargs.get("rename"), where=store.url)
        features = list(meta.features)
        if obs_keys is None:
            obs_keys = [k for k in features if k.startswith("observation.")]
        self.obs_keys = list(obs_keys)
        for key in (*self.obs_keys, action_key):
            if key not in features:
                raise ValueError(f"{store.url}: transition key {key!r} is not a feature; available: {', '.join(features)}")
        if not self.obs_keys:
            raise ValueError(f"{store.url}: no observation keys (no 'observation.*' feature); pass obs_keys=[...]")
        if reward_key == "auto":
            reward_key = next((k for k in REWARD_KEYS if k in features), None)
        elif reward_key is not None and reward_key not in features:
            raise ValueError(f"{store.url}: reward_key {reward_key!r} is not a feature; available: {', '.join(features)}")
        self.action_key, self.reward_key = action_key, reward_key
        deltas = dict(dataset_kwargs.pop("delta_timestamps", None) or {})
        clash = sorted(set(deltas) & set(self.obs_keys))
        if clash:
            raise ValueError(f"{store.url}: delta_timestamps on observation keys {clash}; the transition view "
                             "sets their window to [0, 1/fps] itself (obs, next_obs)")
        deltas.update({k: [0.0, 1.0 / meta.fps] for k in self.obs_keys})
        self.dataset = LeRobotShardDataset(store, delta_timestamps=deltas, **dataset_kwargs)

    # Order, epochs and resume are the wrapped dataset's.
    @property
    def meta(self) -> DatasetMeta:
        return self.dataset.meta

    @property
    def world(self) -> Any:
        return self.dataset.world

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        return self.dataset.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.dataset.load_state_dict(state)

    def io_stats(self) -> dict[str, float]:
        return self.dataset.io_stats()

    def spec(self) -> Spec:
        """What samples hold (see ``mixspec.py``); obs/next_obs are one step, whatever the fps."""
        inner = sample_spec(self.dataset)
        obs = tuple(sorted((k, *inner[k][:2]) for k in self.obs_keys))
        gone = {*self.obs_keys, *(f"{k}_is_pad" for k in self.obs_keys)}
        out = {k: v for k, v in inner.items() if k not in gone}
        out.update({"obs": ("dict", obs, None), "next_obs": ("dict", obs, None), "done": ("bool", (), None)})
        out["action"] = out.pop(self.action_key)
        if self.reward_key is not None:
            out["reward"] = out.pop(self.reward_key)
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # iter(self.dataset) runs now, not at the first next: see LeRobotShardDataset.__iter__.
        return (to_transition(item, self.obs_keys, self.action_key, self.reward_key) for item in self.dataset)


def to_transition(item: dict[str, Any], obs_keys: Sequence[str], action_key: str = "action",
                  reward_key: str | None = None) -> dict[str, Any]:
    """Reshape one sample whose ``obs_keys`` have the window ``[0, 1]`` frames into a transition."""
    out = dict(item)
    obs, nxt = {}, {}
    done = None
    for k in obs_keys:
        window = out.pop(k)
        pad = out.pop(f"{k}_is_pad")
        obs[k], nxt[k] = window[0], window[1]
        done = pad[1] if done is None else done
    out["obs"], out["next_obs"] = obs, nxt
    out["action"] = out.pop(action_key)
    if reward_key is not None:
        out["reward"] = out.pop(reward_key)
    out["done"] = done.clone() if isinstance(done, torch.Tensor) else torch.tensor(bool(done))
    return out
