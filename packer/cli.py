"""``lerobot-wds`` command line: ``pack SRC OUT``, ``check SRC``, ``inspect OUT``, ``verify OUT``.

``pack`` runs shard tasks locally or on Ray (``--executor ray``), adds episodes to a pack
(``--append``) or only prints its plan (``--dry-run``).

Errors the user can fix (the project's own :class:`~lerobot_wds.errors.LeRobotWdsError`: a bad
source, a damaged file, an OUT packed with other options; and ``OSError``: a full disk, a missing or
read-only path) print one message naming what is at fault and exit with status 1, without a
traceback. Anything else is a bug and shows its traceback. Each subcommand is one ``_add_<name>``
(its arguments) and one ``_run_<name>`` (returns the exit status), listed in ``COMMANDS``.
:func:`main` returns the status (for tests and callers in Python); :func:`run` is the program.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, Sequence

from ..errors import LeRobotWdsError, UsageError
from .pack import PackOptions, dry_run, pack
from .shard_plan import parse_size
from .reencode import ReencodeSpec


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


def _storage_option_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                   help=f"fsspec storage option for {what} (repeatable)")


def _add_pack(p: argparse.ArgumentParser) -> None:
    d, r = PackOptions(), ReencodeSpec()  # the defaults, stated once in the options types
    p.add_argument("src", help="dataset root, fsspec URL, hf://datasets/<repo_id> or <owner>/<name>")
    p.add_argument("out", help="output directory, local or fsspec URL (s3://bucket/prefix)")
    p.add_argument("--episodes", help="episode selection, e.g. 0-99,250 (default: all)")
    p.add_argument("--revision", help="Hub revision (branch, tag or commit) of SRC")
    p.add_argument("--shard-size", type=parse_size, default=d.shard_size,
                   help=f"target shard size (default {d.shard_size / 1e6:g}MB)")
    p.add_argument("--workers", type=int, default=d.workers, help="processes writing shards in parallel")
    p.add_argument("--codec", choices=["av1", "h264", "hevc"], help=f"re-encode clips with this codec (default {r.codec}; depth-map cameras stay as recorded)")
    p.add_argument("--gop", type=int, help=f"re-encode: keyframe interval in frames (default {r.gop})")
    p.add_argument("--crf", type=int, help=f"re-encode: constant rate factor (default {r.crf})")
    p.add_argument("--size", type=_size, help="re-encode: frame size HxW in pixels")
    _storage_option_arg(p, "SRC and OUT")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--executor", choices=["local", "ray"], default=d.executor,
                   help="run shard tasks in a local process pool (default) or as Ray tasks")
    p.add_argument("--ray-address",
                   help="Ray cluster address for --executor ray (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--append", action="store_true", help="pack episodes OUT does not hold yet as new shards")
    p.add_argument("--skip-bad-episodes", action="store_true",
                   help="pack every good episode; list each bad one, with its reason, in the manifest and summary")
    p.add_argument("--dry-run", action="store_true", help="print the shards it would write; write nothing")


def _run_pack(args: argparse.Namespace) -> int:
    wants = {"codec": args.codec, "gop": args.gop, "crf": args.crf, "size": args.size}
    spec = None if all(v is None for v in wants.values()) else ReencodeSpec(
        **{k: v for k, v in wants.items() if v is not None})
    if args.ray_address and args.executor != "ray":
        raise UsageError("--ray-address needs --executor ray")
    po = PackOptions(
        shard_size=args.shard_size, workers=args.workers, episodes=args.episodes, revision=args.revision,
        reencode=spec, storage_options=parse_storage_options(args.storage_option), progress=not args.no_progress,
        executor=args.executor, ray_address=args.ray_address, append=args.append,
        skip_bad_episodes=args.skip_bad_episodes)
    if args.dry_run:
        print(dry_run(args.src, args.out, po))
        return 0
    m = pack(args.src, args.out, po)
    print(f"packed {m.total_episodes} episodes, {m.total_frames} frames into {len(m.shards)} shards "
          f"({sum(s.bytes for s in m.shards) / 1e6:.2f} MB) at {args.out}")
    for s in m.skipped_episodes:
        print(f"skipped episode {s.episode_index}: {s.reason}")
    return 0


def _add_check(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="LeRobot v3.0 dataset root or fsspec URL")
    p.add_argument("--revision", help="Hub revision (branch, tag or commit) of SRC")
    _storage_option_arg(p, "SRC")


def _run_check(args: argparse.Namespace) -> int:
    from .check import check

    report = check(args.src, args.revision, parse_storage_options(args.storage_option))
    for line in report.defects:
        print(f"DEFECT {line}")
    print(report.summary())
    return 0 if not report.defects else 1


def _add_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("out")
    _storage_option_arg(p, "OUT")


def _add_verify(p: argparse.ArgumentParser) -> None:
    _add_out(p)
    p.add_argument("--full", action="store_true", help="decode every frame of every clip (default: one per clip)")


def _run_inspect(args: argparse.Namespace) -> int:
    from .verify import inspect

    print(inspect(args.out, parse_storage_options(args.storage_option)))
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from .verify import verify

    problems = verify(args.out, parse_storage_options(args.storage_option), full=args.full)
    for line in problems:
        print(f"FAIL {line}")
    print("verified: OK" if not problems else f"verify: {len(problems)} problem(s)")
    return 0 if not problems else 1


#: Subcommand → (help, add its arguments, run it and return the exit status).
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "pack": ("pack a LeRobot v3.0 dataset (local root, fsspec URL or Hub repo id)", _add_pack, _run_pack),
    "check": ("audit a LeRobot v3.0 dataset without packing it; exit 1 on defects", _add_check, _run_check),
    "inspect": ("inspect a packed dataset", _add_out, _run_inspect),
    "verify": ("verify a packed dataset: checksums, byte ranges, members, frame counts, clips", _add_verify,
               _run_verify),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lerobot-wds", description="Pack LeRobot v3 datasets into WebDataset shards.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, (text, add, _) in COMMANDS.items():
        add(sub.add_parser(name, help=text))
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
    try:
        return COMMANDS[args.command][2](args)
    except (LeRobotWdsError, OSError) as e:
        print(f"lerobot-wds {args.command}: error: {e}", file=sys.stderr)
        return 1


def run() -> None:
    """The ``lerobot-wds`` program: :func:`main`, then exit with its status, skipping the
    interpreter's teardown.

    Native threads can abort that teardown after a command has finished, and the process then
    exits with status -6 and "terminate called without an active exception" instead of the
    command's status: Arrow's thread pools are known to (apache/arrow#34314), and this project's CI
    saw it once, after ``pack`` had printed its error. By the time :func:`main` returns, everything
    a command wrote is closed and in place, so the program flushes its output, disconnects from Ray
    if a pack started or joined it, and leaves. ``train`` exits the usual way: lerobot's training
    keeps exit handlers of its own.
    """
    argv = sys.argv[1:]
    code = main(argv)
    if argv[:1] == ["train"]:
        sys.exit(code)
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # the pipe's reader went away, or the stream is closed
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
