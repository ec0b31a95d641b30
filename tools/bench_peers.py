"""Ours against LeRobotDataset, StreamingLeRobotDataset and lerobot-lancedb on one dataset, one run.

Runs in the lerobot 0.6.1 environment (``.venv-lerobot``) with ``pip install lerobot-lancedb
matplotlib "s3fs==<its fsspec version>"`` (lerobot-lancedb 0.3.1 keeps lerobot 0.6.1; an s3fs
of another version would upgrade fsspec); ``--remote`` starts the S3 server with
``--moto-python`` (a Python with ``moto[server]``, e.g. ``.venv/bin/python``). Steps:

1. the dataset of issue 12, written by lerobot's own writer (``tools/bench_peers_data.py``; 50
   episodes, ~13k frames, ``observation.images.top`` 480x640 + ``observation.images.wrist``
   240x320, AV1 lerobot defaults), packed (``lerobot-wds pack``) and converted for lance
   (``lerobot-lance-convert``); all cached under ``--data`` so re-runs skip them;
2. for each reader x workers (0, 2) x windows (off/on), a fresh process: DataLoader batch 32 (for
   ``ours-batched``: the dataset's ``batch_size=32``, DataLoader ``batch_size=None``),
   ``return_uint8=True``, spawn workers, prefetch 4, persistent workers; the first batch's time
   from ``iter()``; then ``--warmup`` s, then samples/s over ``--seconds`` (epochs restart as
   needed); peak RSS of the process tree (``bench_refs.rss_parts``), and what it was made of at
   the peak (training process, workers, shared memory); distinct episodes per batch;
   consecutive-batch overlap = the fraction of a batch's episodes also in the previous batch;
   batch-mean frame_index spread = the standard deviation, over batches, of a batch's mean
   ``frame_index`` (large when batches drift through episode phases together: all starts, then all
   ends; about 75 / sqrt(32) = 13 for a global shuffle here); ``--pool N`` adds rows of ours at
   ``episode_pool_size=N`` (reader ``ours-poolN``), to weigh memory against mixing in the same run;
3. the decode limit: bare torchcodec decode of every frame once, in file order (ranges of 8
   frames), from the packed in-memory clips, one process, one FFmpeg thread: samples/s = frames /
   (top + wrist seconds); for 0 workers, one process on the decode threads ours uses there
   (``reader/video.py`` ``MAIN_DECODE_STREAMS``, each thread a share of the episodes, one FFmpeg
   thread per decoder: samples/s = frames / wall seconds); for 2 workers, 2 one-thread processes at once,
   each on half the episodes (their samples/s summed): each ratio is against bare decoding with
   the same processes and threads on this machine; measured at each round's start, and again
   right after each ``ours-batched`` row from disk, for that row's workers only (``limit_after``
   in the JSON): a round's last rows run minutes after its start, and the machine's speed drifts;
4. steps 2-3 are repeated ``--rounds`` times (default 3), rows interleaved, so a drift in the
   machine's speed hits every reader alike; the table gives the median samples/s and first batch
   over rounds, the highest peak RSS and the mean mixing measures (each round's rows in the JSON);
   ``--remote``: ours, ours-batched and lance with windows also from an S3 API on loopback (moto,
   started once, behind a proxy adding ``--latency-ms`` per request), each right after the same
   row from disk, and the remote ÷ local ratio also as the median over rounds of those pairs;
5. prints a markdown table, then ours' rows against their own round's decode limit, round by
   round (``by_round``: the limit drifts between rounds as the rows do; ``tools/peers_by_round.py``
   prints it again from a saved run), and against the limit measured right after them, and writes
   ``--plot`` (PNG).

"win" = a 16-step ``action`` window plus ``observation.images.top`` at ``[-0.1, 0.0]``.

    .venv-lerobot/bin/python tools/bench_peers.py --seconds 10 --remote --moto-python .venv/bin/python [--pool 24]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))  # testkit/ (never installed); an installed lerobot_wds comes first
sys.path.insert(0, str(REPO / "tools"))

TOP, WRIST = "observation.images.top", "observation.images.wrist"
BATCH = 32
READERS = ("lerobot", "streaming", "lance", "ours", "ours-batched")
OURS = ("ours", "ours-batched")  # per sample (DataLoader batch_size=32), and batch_size=32 in the dataset
POOL_READER = "ours-pool"  # "ours-pool24": ours at episode_pool_size=24 (--pool)


def windows(fps: int = 30) -> dict[str, list[float]]:
    return {"action": [i / fps for i in range(16)], TOP: [-0.1, 0.0]}


def loader_options(nw: int) -> dict:
    """DataLoader settings of every row besides batch size and shuffle (spawn, prefetch 4, persistent)."""
    return dict(multiprocessing_context="spawn", prefetch_factor=4, persistent_workers=True) if nw else {}


def prepare(data: Path, episodes: int = 50, shard_size: str | None = None) -> dict[str, str]:
    """The lerobot dataset (``episodes`` of them), its packed shards (``shard_size``: the packer's
    ``--shard-size``, None for its default) and its lance conversion under ``data``, each made
    once: a directory that has them is used as it is."""
    from bench_peers_data import write

    root = write(str(data), episodes)
    packed, lance = data / "packed", data / "lance"
    bindir = Path(sys.executable).parent
    if not (packed / "manifest.json").exists():
        size = ["--shard-size", shard_size] if shard_size else []
        subprocess.run([str(bindir / "lerobot-wds"), "pack", root, str(packed), "--no-progress", *size], check=True)
    if not (lance / "frames.lance").exists():
        subprocess.run([str(bindir / "lerobot-lance-convert"), "--root", root, "--out", str(lance)], check=True)
    return {"lerobot": root, "streaming": root, "lance": str(lance), "ours": str(packed), "ours-batched": str(packed)}


def make_dataset(reader: str, path: str, win: bool, storage: dict | None):
    deltas = windows() if win else None
    if reader == "lerobot":
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        return LeRobotDataset("bench/peers", root=path, delta_timestamps=deltas, return_uint8=True)
    if reader == "streaming":
        from lerobot.datasets.streaming_dataset import StreamingLeRobotDataset

        return StreamingLeRobotDataset("bench/peers", root=path, delta_timestamps=deltas, return_uint8=True)
    if reader == "lance":
        from lerobot_lancedb import LanceDBDataset

        return LanceDBDataset(root=path, delta_timestamps=deltas, return_uint8=True, storage_options=storage)
    from lerobot_wds.reader import LeRobotShardDataset
    from lerobot_wds.reader.storage import Store

    url = Store(path, storage) if storage else path
    pool = {"episode_pool_size": int(reader.removeprefix(POOL_READER))} if reader.startswith(POOL_READER) else {}
    batched = {"batch_size": BATCH} if reader == "ours-batched" else {}
    return LeRobotShardDataset(url, delta_timestamps=deltas, return_uint8=True, seed=0, **pool, **batched)


def child(reader: str, path: str, nw: int, win: bool, seconds: float, warmup: float, storage: dict | None,
          step: float = 0.0) -> dict:
    """One measurement in this (fresh) process; returns the row. ``step``: seconds the loop sleeps
    after each batch, a training step that leaves the CPU idle (a GPU's)."""
    import torch
    from torch.utils.data import DataLoader

    from bench_refs import PeakRSS
    from mixing_sim import measure

    with PeakRSS() as rss:
        ds = make_dataset(reader, path, win, storage)
        mapstyle = not isinstance(ds, torch.utils.data.IterableDataset)
        batch = None if reader == "ours-batched" else BATCH  # ours-batched: the dataset batches
        loader = DataLoader(ds, batch_size=batch, shuffle=mapstyle, num_workers=nw, **loader_options(nw))
        eps, phase, timing = [], [], {}

        def training_step(batch: dict) -> dict:  # a GPU's: the CPU idle for ``step`` s
            time.sleep(step)
            return batch

        for batch in measured_batches(ds, loader, seconds, warmup, timing, training_step if step else None):
            eps.append(batch["episode_index"].tolist())
            phase.append(batch["frame_index"].double().mean().item())
        del loader
    distinct, overlap = measure([b for b in eps if len(b) == BATCH])
    spread = statistics.stdev(phase) if len(phase) > 1 else 0.0
    return {"reader": reader, "workers": nw, "win": win, "samples_s": timing["samples_s"],
            "first_s": timing["first_s"], "rss_gb": rss.peak / 1e9,
            "rss_parts_gb": {k: v / 1e9 for k, v in rss.peak_parts.items()},
            "distinct": distinct, "overlap": overlap, "phase_spread": spread}


def measured_batches(ds, loader, seconds: float, warmup: float, timing: dict,
                     prepare: Callable[[dict], dict] | None = None) -> Iterator[dict]:
    """The batches ``loader`` gives (epochs restarted as needed, ``ds.set_epoch`` where it has one)
    from ``warmup`` s after the first batch until ``seconds`` more have passed. ``prepare`` runs on
    every batch before its time is taken (a training step's share). Fills ``timing``: ``first_s``,
    the first batch's time from ``iter()``, and, once done, ``samples_s`` over the measured ones."""
    t0 = time.perf_counter()
    first = t_start = None
    n = epoch = 0
    while True:
        if hasattr(ds, "set_epoch"):
            ds.set_epoch(epoch)
        for batch in loader:
            if prepare is not None:
                batch = prepare(batch)
            now = time.perf_counter()
            if first is None:
                first = timing["first_s"] = now - t0
            if t_start is None and now - t0 >= first + warmup:
                t_start = now
            elif t_start is not None:
                n += len(batch["index"])
                yield batch
                if now - t_start >= seconds:
                    timing["samples_s"] = n / (now - t_start)
                    return
        epoch += 1


def decode_limit(packed: str, max_episodes: int = 50, part: int = 0, parts: int = 1, streams: int = 1) -> dict:
    """Bare torchcodec: every frame of each clip once, in file order, decoded in ranges of 8 frames
    (the fastest bare way measured: a whole episode as one range is ~1.47x slower, its output
    tensor's fresh pages cost more than the decode; frame by frame ~3 %), over episodes ``part``,
    ``part + parts``, ... of the first ``max_episodes``, one FFmpeg thread per decoder; with
    ``streams`` > 1 on that many threads at once, each a share of the episodes (samples/s = frames
    / wall seconds)."""
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from torchcodec.decoders import VideoDecoder

    from bench_refs import first_episodes

    torch.set_num_threads(1)
    eps = first_episodes(packed, max_episodes, part, parts)

    def decode(share: list) -> dict[str, float]:
        secs = {TOP: 0.0, WRIST: 0.0}
        for ep in share:
            for cam in secs:
                lead = ep.meta.clips[cam].lead_in
                t = time.perf_counter()
                dec = VideoDecoder(ep.clips[cam], num_ffmpeg_threads=1)
                for i in range(0, ep.length, 8):
                    dec.get_frames_in_range(lead + i, lead + min(i + 8, ep.length))
                secs[cam] += time.perf_counter() - t
        return secs

    frames = sum(ep.length for ep in eps)
    if streams == 1:
        secs = decode(eps)
        return {cam: frames / s for cam, s in secs.items()} | {"samples_s": frames / sum(secs.values())}
    t = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(decode, [eps[k::streams] for k in range(streams)]))
    return {"samples_s": frames / (time.perf_counter() - t)}


def decode_limits(packed: str, workers: list[int]) -> dict:
    """The decode limit in one process on one thread (with each camera's frames/s); and, keyed
    ``samples_s_<n>``, :func:`limit_now` for 0 workers and for each worker count n > 1 measured."""
    out = decode_limit(packed)
    for n in sorted({w for w in workers if w != 1}):
        out[f"samples_s_{n}"] = limit_now(packed, n)
    return out


def limit_now(packed: str, workers: int) -> float:
    """The decode limit a row with ``workers`` DataLoader workers is compared with, measured now
    (samples/s): at 0 workers one process on the decode threads ours uses there
    (``MAIN_DECODE_STREAMS``); at 1, one process on one thread; at n > 1, n processes decoding at
    once on one thread each (each a share of the episodes; samples/s summed). So each ratio is
    taken against what bare decoding with the same processes and threads reaches on this machine,
    not n times one."""
    from lerobot_wds.reader.video import MAIN_DECODE_STREAMS

    if workers <= 1:
        return decode_limit(packed, streams=MAIN_DECODE_STREAMS if workers == 0 else 1)["samples_s"]
    procs = [subprocess.Popen([sys.executable, __file__, "--limit-part", str(k), str(workers), packed],
                              stdout=subprocess.PIPE, text=True) for k in range(workers)]
    parts = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return sum(r["samples_s"] for r in parts)


def limit_for(limit: dict, workers: int) -> float:
    """The decode limit a row with ``workers`` DataLoader workers is compared with."""
    return limit.get(f"samples_s_{workers}", limit["samples_s"])


def merge_rounds(rows: list[dict]) -> list[dict]:
    """One row per (reader, workers, win, remote): the median over rounds of samples/s and first
    batch, the highest peak RSS, the mean of the mixing measures; each round's samples/s kept."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["reader"], r["workers"], r["win"], r.get("remote", False)), []).append(r)
    out = []
    for (reader, nw, win, remote), rs in groups.items():
        ok = [r for r in rs if "samples_s" in r]
        row = {"reader": reader, "workers": nw, "win": win, "remote": remote}
        if not ok:
            out.append(row | {"error": rs[-1].get("error", "?")})
            continue
        row |= {"samples_s": statistics.median(r["samples_s"] for r in ok),
                "first_s": statistics.median(r["first_s"] for r in ok),
                "rss_gb": max(r["rss_gb"] for r in ok),
                "rss_parts_gb": max(ok, key=lambda r: r["rss_gb"]).get("rss_parts_gb", {}),
                "rounds_samples_s": [round(r["samples_s"], 1) for r in ok]}
        for k in ("distinct", "overlap", "phase_spread"):
            row[k] = statistics.fmean(r[k] for r in ok)
        out.append(row)
    return out


def run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(lines[-1])


def by_round(rows: list[dict], limits: list[dict]) -> str:
    """Ours' rows from disk against the decode limit of their own round, round by round: the limit
    moves between rounds on a shared machine as much as the rows do, and a round's rows are
    measured nearer its own limit than the medians are. Then, where the run measured it, against
    the limit measured right after the round's ``ours-batched`` row (``limit_after``), nearer still."""

    def ours(rnd: int, nw: int, win: bool) -> dict[str, float]:
        return {r["reader"]: r["samples_s"] for r in rows if r.get("round") == rnd and r["workers"] == nw
                and r["win"] == win and not r.get("remote") and "samples_s" in r and r["reader"] in OURS}

    def ratios(got: dict[str, float], limit: float) -> str:
        return " / ".join(f"{got[o] / limit:.2f}" if o in got else "-" for o in OURS)

    configs = [(win, nw) for win in (False, True) for nw in (0, 2)]
    lines = ["÷ decode limit, each round's row against that round's limit (ours / ours-batched):\n"]
    for win, nw in configs:
        per = [ratios(ours(rnd, nw, win), limit_for(limit, nw)) for rnd, limit in enumerate(limits)]
        lines.append(f"- {'win' if win else 'no win'}, {nw} workers: " + ", ".join(per))
    after = [r for r in rows if "limit_after" in r]
    if after:
        lines.append("\n÷ the decode limit measured right after the round's ours-batched row (ours / "
                     "ours-batched), round by round; median over rounds:\n")
    for win, nw in configs:
        pairs = [(ours(x["round"], nw, win), x["limit_after"]) for x in after if x["workers"] == nw and x["win"] == win]
        if pairs:
            median = {o: statistics.median(got[o] / lim for got, lim in pairs) for o in OURS
                      if all(o in got for got, _ in pairs)}
            lines.append(f"- {'win' if win else 'no win'}, {nw} workers: "
                         + ", ".join(ratios(got, lim) for got, lim in pairs) + "; median "
                         + " / ".join(f"{median[o]:.2f}" if o in median else "-" for o in OURS))
    return "\n".join(lines)


def table(rows: list[dict], limit: dict) -> str:
    by = {(r["reader"], r["workers"], r["win"], r.get("remote", False)): r for r in rows}
    hdr = ("| | " + " | ".join(READERS) + " | ÷ map | ÷ lance | ÷ decode limit |\n|---|" + "---|" * (len(READERS) + 3))
    lines = ["ratios: ours / ours-batched\n", hdr]
    for win in (False, True):
        for nw in (0, 2):
            vals = {r: by.get((r, nw, win, False), {}).get("samples_s") for r in READERS}
            ratio = lambda b: " / ".join(f"{vals[o] / b:.2f}" if vals.get(o) and b else "-" for o in OURS)
            lines.append(f"| {'win' if win else 'no win'}, {nw} workers | "
                         + " | ".join(f"{v:.0f}" if v else "-" for v in vals.values())
                         + f" | {ratio(vals['lerobot'])} | {ratio(vals['lance'])} | {ratio(limit_for(limit, nw))} |")
    lines.append("\nfirst batch s / peak RSS GB / distinct episodes per batch / consecutive-batch overlap / "
                 "batch-mean frame_index spread:\n")
    lines.append("| | " + " | ".join(READERS) + " |\n|---|" + "---|" * len(READERS))
    for win in (False, True):
        for nw in (0, 2):
            cells = []
            for r in READERS:
                x = by.get((r, nw, win, False))
                cells.append(f"{x['first_s']:.1f} / {x['rss_gb']:.2f} / {x['distinct']:.1f} / {x['overlap']:.2f}"
                             f" / {x.get('phase_spread', float('nan')):.0f}"
                             if x and "samples_s" in x else (x or {}).get("error", "-")[:60])
            lines.append(f"| {'win' if win else 'no win'}, {nw} workers | " + " | ".join(cells) + " |")
    for pooled in sorted({r["reader"] for r in rows if r["reader"].startswith(POOL_READER)}):
        lines.append(f"\n{pooled} (ours at episode_pool_size={pooled.removeprefix(POOL_READER)}): samples/s, "
                     "÷ map, ÷ lance, peak RSS GB / distinct / overlap:\n")
        for win in (False, True):
            for nw in (0, 2):
                x, m, la = (by.get((r, nw, win, False), {}) for r in (pooled, "lerobot", "lance"))
                if "samples_s" not in x:
                    continue
                ratios = " ".join(f"{x['samples_s'] / y['samples_s']:.2f}" if "samples_s" in y else "-" for y in (m, la))
                lines.append(f"- {'win' if win else 'no win'}, {nw} workers: {x['samples_s']:.0f}, {ratios}, "
                             f"{x['rss_gb']:.2f} / {x['distinct']:.1f} / {x['overlap']:.2f}")
    lines.append("\npeak RSS GB, what it was made of: training process (private + file-backed) / DataLoader "
                 "workers (private, together) / shared memory (batches in flight):\n")
    for win in (False, True):
        for nw in (0, 2):
            cells = []
            for r in READERS:
                parts = by.get((r, nw, win, False), {}).get("rss_parts_gb")
                cells.append(" / ".join(f"{parts[k]:.2f}" for k in ("root", "children", "shared")) if parts else "-")
            lines.append(f"- {'win' if win else 'no win'}, {nw} workers: "
                         + ", ".join(f"{r} {c}" for r, c in zip(READERS, cells)))
    remote = [r for r in rows if r.get("remote")]
    if remote:
        lines.append("\nremote (S3 on loopback, +latency per request), samples/s:\n")
        for r in remote:
            local = by.get((r["reader"], r["workers"], r["win"], False), {}).get("samples_s")
            s, paired = r.get("samples_s"), r.get("paired_local_ratio")
            lines.append(f"- {r['reader']} {'win' if r['win'] else 'no win'} {r['workers']} workers: "
                         + (f"{s:.0f} (÷ local {s / local:.2f}" + (f"; paired by round {paired:.2f}" if paired else "") + ")"
                            if s and local else r.get("error", "-")))
    lines.append(f"\ndecode limit (bare torchcodec, each frame once, file order), 1 process, 1 thread: "
                 f"top {limit[TOP]:.0f} frames/s, wrist {limit[WRIST]:.0f} frames/s, {limit['samples_s']:.0f} samples/s"
                 + "".join(f"; 1 process at ours' 0-worker decode threads: {v:.0f}" if k == "samples_s_0"
                           else f"; {k.rsplit('_', 1)[1]} processes at once: {v:.0f} samples/s"
                           for k, v in limit.items() if k.startswith("samples_s_")))
    return "\n".join(lines)


def plot(rows: list[dict], limit: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(w, nw) for w in (False, True) for nw in (0, 2)]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(READERS)
    for k, r in enumerate(READERS):
        vals = [next((x["samples_s"] for x in rows if (x.get("reader"), x.get("win"), x.get("workers"), x.get("remote", False))
                      == (r, w, nw, False) and "samples_s" in x), 0) for w, nw in groups]
        ax.bar([g + k * width for g in range(len(groups))], vals, width, label=r)
    for g, (_, nw) in enumerate(groups):  # each row's limit: its processes and threads, as the table's
        ax.hlines(limit_for(limit, nw), g - width / 2, g + 0.8 - width / 2, color="k", ls="--", lw=1,
                  label="decode limit (the row's processes)" if g == 0 else None)
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))])
    ax.set_xticklabels([f"{'win' if w else 'no win'}, {nw} workers" for w, nw in groups])
    ax.set_ylabel("samples/s (batch 32, uint8)")
    ax.set_title("480x640 + 240x320 AV1, 50 episodes (tools/bench_peers.py)")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.25)  # room for the legend above the limit
    ax.legend(fontsize=8, ncol=3, loc="upper left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)


@contextmanager
def remote_sources(paths: dict, a) -> Iterator[dict[str, tuple[str, dict]]]:
    """``{reader: (url, storage options)}`` for ours, ours-batched and lance, served for the whole run
    by a moto S3 server on loopback through a latency proxy (``--latency-ms`` per request)."""
    from testkit.servers import KEY, REGION, SECRET, FaultProxy, Faults, S3Server, s3_options

    import s3fs

    exe, sys.executable = sys.executable, a.moto_python  # S3Server runs `sys.executable -m moto.server`
    try:
        server = S3Server()
    finally:
        sys.executable = exe
    try:
        server.make_bucket("bench")
        fs = s3fs.S3FileSystem(**s3_options(server.endpoint_url))
        fs.put(paths["ours"], "bench/packed", recursive=True)
        fs.put(paths["lance"], "bench/lance", recursive=True)
        proxy = FaultProxy(server.port, Faults(latency_s=a.latency_ms / 1000))
        try:
            ours = s3_options(proxy.endpoint_url, client_retries=True)
            lance = {"aws_access_key_id": KEY, "aws_secret_access_key": SECRET, "aws_region": REGION,
                     "aws_endpoint": proxy.endpoint_url, "allow_http": "true"}
            yield {o: ("s3://bench/packed", ours) for o in OURS} | {"lance": ("s3://bench/lance", lance)}
        finally:
            proxy.stop()
    finally:
        server.stop()


def paired_remote_ratio(rows: list[dict], reader: str, nw: int) -> float | None:
    """Median over rounds of remote ÷ local samples/s of one reader (windows), each remote row
    against the local row run just before it."""
    def by_round(remote: bool) -> dict[int, float]:
        return {r["round"]: r["samples_s"] for r in rows if r["reader"] == reader and r["workers"] == nw
                and r["win"] and r.get("remote", False) == remote and "samples_s" in r}
    local, remote = by_round(False), by_round(True)
    ratios = [remote[k] / local[k] for k in remote if k in local]
    return statistics.median(ratios) if ratios else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO / "bench_out" / "peers")
    ap.add_argument("--episodes", type=int, default=50, help="episodes of the dataset written under --data")
    ap.add_argument("--shard-size", help="the packer's --shard-size for --data/packed (default: the packer's)")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds per row, after warm-up")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds after the first batch not counted")
    ap.add_argument("--rounds", type=int, default=3,
                    help="repeat every row this many times, interleaved; report medians (a shared machine's speed drifts)")
    ap.add_argument("--readers", default=",".join(READERS))
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--pool", type=int, help="also ours at this episode_pool_size (rows 'ours-pool<N>')")
    ap.add_argument("--remote", action="store_true", help="also ours, ours-batched and lance from S3 on loopback")
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--moto-python", default=sys.executable, help="a Python with moto[server] for the S3 server")
    ap.add_argument("--plot", type=Path, default=REPO / "docs" / "bench_peers.png")
    ap.add_argument("--step-ms", type=float, default=0.0,
                    help="each row's loop sleeps this long after every batch: a training step on a GPU, which "
                         "leaves the CPU idle; DataLoader queues fill when the reader outpaces it (default: none)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--limit-part", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.limit_part:
        part, parts, packed = a.limit_part
        print(json.dumps(decode_limit(packed, part=int(part), parts=int(parts))))
        return 0
    if a.child:
        reader, path, nw, win, seconds, warmup, storage, *step = a.child  # step: seconds, optional
        print(json.dumps(child(reader, path, int(nw), win == "1", float(seconds), float(warmup),
                               json.loads(storage), float(step[0]) if step else 0.0)))
        return 0
    a.workers = [int(w) for w in a.workers.split(",")]
    paths = prepare(a.data, a.episodes, a.shard_size)
    readers = a.readers.split(",")
    if a.pool:
        readers.append(f"{POOL_READER}{a.pool}")
        paths[readers[-1]] = paths["ours"]
    rows, limits = [], []
    with remote_sources(paths, a) if a.remote else nullcontext({}) as remote:
        for rnd in range(a.rounds):
            limits.append(decode_limits(paths["ours"], a.workers))
            print(json.dumps({"round": rnd, "decode_limit": limits[-1]}), flush=True)
            for win in (False, True):
                for nw in a.workers:
                    for reader in readers:
                        sources = [(paths[reader], "null", False)]
                        if win and reader in remote:  # from S3 right after from disk: the same drift
                            url, opts = remote[reader]
                            sources.append((url, json.dumps(opts), True))
                        for path, storage, is_remote in sources:
                            row = run_child([reader, path, str(nw), "1" if win else "0", str(a.seconds),
                                             str(a.warmup), storage, str(a.step_ms / 1000)])
                            row.update(reader=reader, workers=nw, win=win, round=rnd, remote=is_remote)
                            if reader == "ours-batched" and not is_remote:  # the limit as the row ran
                                row["limit_after"] = limit_now(paths["ours"], nw)
                            print(json.dumps(row), flush=True)
                            rows.append(row)
    limit = {k: statistics.median(x[k] for x in limits) for k in limits[0]}
    merged = merge_rounds(rows)
    for row in merged:
        if row["remote"]:
            row["paired_local_ratio"] = paired_remote_ratio(rows, row["reader"], row["workers"])
    print(table(merged, limit))
    print(by_round(rows, limits))
    plot(merged, limit, a.plot)
    (a.data / "bench_peers.json").write_text(json.dumps({"rows": rows, "merged": merged, "decode_limit": limit,
                                                         "decode_limits": limits}, indent=1))
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
