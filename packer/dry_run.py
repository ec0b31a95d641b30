"""``pack --dry-run``: the shards a pack would write, as text, from the plan alone (no I/O here).

Sizes are the planner's estimates (source file sizes prorated per episode, see ``plan.py``), so
real shards differ from them by the estimate's error; episode lists are written as inclusive
ranges (``0-99,250``), the syntax ``--episodes`` accepts.
"""

from __future__ import annotations

from typing import Sequence


def episode_ranges(indices: Sequence[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` → ``"0-2,5,7-8"`` (input order kept; consecutive runs collapsed)."""
    parts: list[str] = []
    run: list[int] = []
    for i in indices:
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)


def describe_plan(
    out: str, shards: Sequence[tuple[str, Sequence[int], int]], skipped: int = 0, kept: int = 0
) -> str:
    """One line per shard to write: name, estimated MB (10^6 bytes), episode count and ranges.

    ``shards``: (name, episode indices, estimated bytes) per shard to write; ``kept``: shards already
    in OUT that would be kept (complete, or listed by the manifest an append extends); ``skipped``:
    episodes they hold.
    """
    lines = [f"{'shard':<18} {'~MB':>9} {'episodes':>8}  episode indices"]
    for name, eps, nbytes in shards:
        lines.append(f"{name:<18} {nbytes / 1e6:9.2f} {len(eps):8d}  {episode_ranges(eps)}")
    total = sum(n for _, _, n in shards)
    episodes = sum(len(e) for _, e, _ in shards)
    lines.append(f"dry run: would write {len(shards)} shard(s), ~{total / 1e6:.2f} MB, {episodes} episode(s) to {out}"
                 + (f"; {kept} shard(s) with {skipped} episode(s) already there are kept" if kept else "")
                 + "; nothing written")
    return "\n".join(lines)
