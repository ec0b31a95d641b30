"""``lerobot-wds`` command line: ``pack SRC OUT``, ``inspect OUT``, ``verify OUT``.

``pack`` runs shard tasks locally or on Ray (``--executor ray``), adds episodes to a pack
(``--append``) or only prints its plan (``--dry-run``).

Errors the user can fix (a bad source, a damaged file, an OUT packed with other options) print one
message naming the file and episode at fault and exit with status 1, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .clip import ClipError
from .executor import TaskFailed
from .pack import PackError, PackOptions, dry_run, pack
from .shard_plan import parse_size
from .reencode import ReencodeSpec
from .source import SourceError


def parse_storage_options(items: Sequence[str]) -> dict:
    """``["KEY=VALUE", ...]`` from ``--storage-option`` flags → fsspec storage options
    (``true``/``false`` become booleans)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--storage-option {item!r}: expected KEY=VALUE, e.g. endpoint_url=http://127.0.0.1:9000")
        out[key] = {"true": True, "false": False}.get(value.lower(), value)
    return out


def _size(text: str) -> tuple[int, int]:
    h, sep, w = text.lower().partition("x")
    if not (sep and h.isdigit() and w.isdigit()):
        raise argparse.ArgumentTypeError(f"--size {text!r}: expected HxW in pixels, e.g. 240x320")
    return int(h), int(w)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lerobot-wds", description="Pack LeRobot v3 datasets into WebDataset shards.")
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="pack a LeRobot v3.0 dataset (local root, fsspec URL or Hub repo id)")
    pk.add_argument("src", help="dataset root, fsspec URL, hf://datasets/<repo_id> or <owner>/<name>")
    pk.add_argument("out", help="output directory, local or fsspec URL (s3://bucket/prefix)")
    pk.add_argument("--episodes", help="episode selection, e.g. 0-99,250 (default: all)")
    pk.add_argument("--revision", help="Hub revision (branch, tag or commit) of SRC")
    pk.add_argument("--shard-size", type=parse_size, default=parse_size("512MB"), help="target shard size (default 512MB)")
    pk.add_argument("--workers", type=int, default=1, help="processes writing shards in parallel")
    pk.add_argument("--codec", choices=["av1", "h264", "hevc"], help="re-encode clips with this codec")
    pk.add_argument("--gop", type=int, help="re-encode: keyframe interval in frames (default 2)")
    pk.add_argument("--crf", type=int, help="re-encode: constant rate factor (default 30)")
    pk.add_argument("--size", type=_size, help="re-encode: frame size HxW in pixels")
    pk.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                    help="fsspec storage option for SRC and OUT (repeatable)")
    pk.add_argument("--no-progress", action="store_true", help="no progress bar")
    pk.add_argument("--executor", choices=["local", "ray"], default="local",
                    help="run shard tasks in a local process pool (default) or as Ray tasks")
    pk.add_argument("--ray-address",
                    help="Ray cluster address for --executor ray (default: RAY_ADDRESS, else a local Ray)")
    pk.add_argument("--append", action="store_true", help="pack episodes OUT does not hold yet as new shards")
    pk.add_argument("--dry-run", action="store_true", help="print the shards it would write; write nothing")
    for name in ("inspect", "verify"):
        s = sub.add_parser(name, help=f"{name} a packed dataset")
        s.add_argument("out")
        s.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE")
    sub.add_parser("train", add_help=False, help="lerobot-train on a packed dataset: lerobot-wds train "
                   "--dataset.root=<packed dir or URL> --dataset.repo_id=<label> <lerobot-train arguments>")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # lerobot's own train: every other argument goes to it unchanged
        from ..reader.lerobot_train import main as train

        return train(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    opts = parse_storage_options(args.storage_option)
    try:
        if args.command == "pack":
            wants = (args.codec, args.gop, args.crf, args.size)
            spec = None if all(v is None for v in wants) else ReencodeSpec(
                codec=args.codec or "av1", gop=args.gop or 2, crf=30 if args.crf is None else args.crf, size=args.size)
            if args.ray_address and args.executor != "ray":
                raise ValueError("--ray-address needs --executor ray")
            po = PackOptions(
                shard_size=args.shard_size, workers=args.workers, episodes=args.episodes, revision=args.revision,
                reencode=spec, storage_options=opts, progress=not args.no_progress, executor=args.executor,
                ray_address=args.ray_address, append=args.append)
            if args.dry_run:
                print(dry_run(args.src, args.out, po))
                return 0
            m = pack(args.src, args.out, po)
            print(f"packed {m.total_episodes} episodes, {m.total_frames} frames into {len(m.shards)} shards "
                  f"({sum(s.bytes for s in m.shards) / 1e6:.2f} MB) at {args.out}")
        elif args.command == "inspect":
            from .verify import inspect

            print(inspect(args.out, opts))
        else:
            from .verify import verify

            problems = verify(args.out, opts)
            for line in problems:
                print(f"FAIL {line}")
            print("verified: OK" if not problems else f"verify: {len(problems)} problem(s)")
            return 0 if not problems else 1
    except (SourceError, ClipError, PackError, TaskFailed, ValueError, FileNotFoundError, ImportError) as e:
        print(f"lerobot-wds {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
