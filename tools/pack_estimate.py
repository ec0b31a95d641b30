"""Wall time and cost of packing a large dataset on N machines, from measured per-episode costs.

    python tools/pack_estimate.py --sec-per-episode 0.05 --bytes-per-episode 1.2MB [--efficiency 0.9]

``tools/bench_pack.py --ray`` measures the inputs and prints this estimate. The model, stated so it
can be checked and its parameters changed:

* CPU: packing is remux (no re-encode), so one core's cost scales with an episode's bytes: the
  measured seconds per episode on one core, times (target bytes per episode / measured bytes per
  episode). Conservative: the benchmark's small frames have more packets per byte than camera
  footage, and part of the cost is per packet, not per byte.
* Parallelism: ``cores`` shard tasks per machine (one Ray task per core), at the measured parallel
  efficiency (throughput of the Ray run on 2 cores / twice that of one process).
* Network: every source byte is read once and every output byte written once (remux: output ≈
  input), through each machine's NIC at ``gbps``; the source store (Hub, S3) is assumed to serve
  N × that. Compute and transfer overlap across tasks, so wall ≈ the larger of the two.
* Fixed: ``startup_s`` for planning (reading ``meta/``, sizing files) and cluster start.
* Cost: machines × cores × wall hours × price per core-hour (a parameter; ~$0.04 is an on-demand
  cloud vCPU-hour in 2024–26 list prices, spot is less). Storage and egress are not counted.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Measured:
    """From a benchmark run: one core's seconds and output bytes per episode, and the parallel efficiency."""

    sec_per_episode: float
    bytes_per_episode: float
    efficiency: float = 1.0


@dataclass(frozen=True)
class Target:
    """The dataset to pack and the machines: sizes in bytes, bandwidth in Gbit/s, price in $ per core-hour."""

    total_bytes: float = 1e12
    episodes: int = 50_000
    cores: int = 16
    gbps: float = 10.0
    price_core_hour: float = 0.04
    startup_s: float = 120.0


def estimate(m: Measured, t: Target, machines: int) -> dict[str, float]:
    """Hours of wall time and dollars for ``machines`` machines; also which bound dominates."""
    per_ep_s = m.sec_per_episode * (t.total_bytes / t.episodes) / m.bytes_per_episode
    cpu_s = t.episodes * per_ep_s
    compute_s = cpu_s / (machines * t.cores * max(m.efficiency, 1e-6))
    network_s = 2 * t.total_bytes / (machines * t.gbps * 1e9 / 8)
    wall_s = max(compute_s, network_s) + t.startup_s
    return {"machines": machines, "core_hours": cpu_s / 3600, "compute_h": compute_s / 3600,
            "network_h": network_s / 3600, "wall_h": wall_s / 3600,
            "cost_usd": machines * t.cores * wall_s / 3600 * t.price_core_hour}


def report(m: Measured, t: Target, machines: Sequence[int] = (1, 4, 16, 64)) -> str:
    """A table of :func:`estimate` for each machine count, with the assumptions it used."""
    lines = [
        f"estimate: {t.total_bytes / 1e12:g} TB, {t.episodes} episodes "
        f"({t.total_bytes / t.episodes / 1e6:.0f} MB/episode); "
        f"{t.cores} cores and {t.gbps:g} Gbit/s per machine; ${t.price_core_hour:g}/core-hour; "
        f"startup {t.startup_s:.0f} s",
        f"  measured: {m.sec_per_episode * 1e3:.1f} ms per {m.bytes_per_episode / 1e6:.2f} MB episode on one core "
        f"({m.bytes_per_episode / m.sec_per_episode / 1e6:.0f} MB/s/core), parallel efficiency {m.efficiency:.2f}",
        f"  {'machines':>8} {'core-h':>8} {'compute h':>10} {'network h':>10} {'wall h':>8} {'cost $':>8}",
    ]
    for n in machines:
        e = estimate(m, t, n)
        lines.append(f"  {n:8d} {e['core_hours']:8.1f} {e['compute_h']:10.2f} {e['network_h']:10.2f} "
                     f"{e['wall_h']:8.2f} {e['cost_usd']:8.2f}")
    return "\n".join(lines)


def main() -> int:
    from lerobot_wds.packer.shard_plan import parse_size

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sec-per-episode", type=float, required=True, help="one core's seconds per episode (measured)")
    ap.add_argument("--bytes-per-episode", type=parse_size, required=True, help="output bytes per episode (measured)")
    ap.add_argument("--efficiency", type=float, default=1.0, help="parallel efficiency (measured)")
    ap.add_argument("--total", type=parse_size, default=parse_size("1TB"))
    ap.add_argument("--episodes", type=int, default=50_000)
    ap.add_argument("--cores", type=int, default=16, help="cores per machine")
    ap.add_argument("--gbps", type=float, default=10.0, help="network Gbit/s per machine")
    ap.add_argument("--price-core-hour", type=float, default=0.04, help="$ per core-hour")
    ap.add_argument("--machines", default="1,4,16,64")
    a = ap.parse_args()
    t = Target(a.total, a.episodes, a.cores, a.gbps, a.price_core_hour)
    print(report(Measured(a.sec_per_episode, a.bytes_per_episode, a.efficiency), t,
                 [int(x) for x in a.machines.split(",")]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
