"""OUT as a pack owns it: one pack at a time, nothing written over files another made, write faults
as one line naming the path.

* Lock: a local OUT holds ``.lerobot-wds/lock``, exclusively locked (``fcntl.flock``) for the whole
  run, so a second ``pack`` into the same OUT stops at once. The kernel drops the lock when the
  holder dies (also by SIGKILL), so a stale lock never blocks a re-run. On object storage there is
  no lock: run one ``pack`` per OUT at a time.
* Ownership: an OUT without pack state (``.lerobot-wds/options.json``) is packed only if it holds
  none of the names a pack writes (``manifest.json``, ``shard-*.tar``); a stray shard is never
  overwritten.
* Faults: a full disk, a read-only or unwritable OUT raise :class:`WriteError` naming the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from typing import Any, Iterator

from ..errors import LeRobotWdsError
from ..format import MANIFEST_NAME
from .source import is_local

STATE_DIR = ".lerobot-wds"
OPTIONS_NAME = "options.json"
LOCK_NAME = "lock"
_PACK_NAMES = re.compile(r"shard-\d+\.tar(\.tmp-\d+)?|manifest\.json(\.tmp-\d+)?")


class WriteError(LeRobotWdsError, OSError):
    """OUT cannot be written (full, read-only, no permission); the message names the path."""


class PackLocked(LeRobotWdsError, RuntimeError):
    """Another pack holds OUT's lock."""


class ForeignFiles(LeRobotWdsError, RuntimeError):
    """OUT holds files with a pack's names that no pack state there accounts for."""


def write_error(path: str, e: OSError) -> WriteError:
    """The one-line error for a failed write of ``path``."""
    return WriteError(f"{path}: cannot write ({e.strerror or e}); free space or fix OUT's permissions, "
                      "then re-run: finished shards are kept")


@contextlib.contextmanager
def pack_lock(fs: Any, root: str) -> Iterator[None]:
    """Hold OUT's exclusive lock for the block (local OUT only; a no-op on object storage)."""
    if not is_local(fs):
        yield
        return
    path = f"{root}/{STATE_DIR}/{LOCK_NAME}"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise write_error(path, e) from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PackLocked(f"{root}: another pack is running into this OUT (it holds {path}); "
                             "wait for it to finish, or pack into another OUT") from None
        yield
    finally:
        os.close(fd)


def check_owned(fs: Any, root: str) -> None:
    """Refuse an OUT without pack state that holds a manifest or shards (we did not write them)."""
    if fs.exists(f"{root}/{STATE_DIR}/{OPTIONS_NAME}"):
        return
    try:
        names = sorted(os.path.basename(p.rstrip("/")) for p in fs.ls(root, detail=False))
    except FileNotFoundError:
        return
    foreign = [n for n in names if _PACK_NAMES.fullmatch(n)]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        what = "a manifest.json but no pack state" if foreign == [MANIFEST_NAME] else f"{shown}, which no pack here made"
        raise ForeignFiles(f"{root}: holds {what}; lerobot-wds does not write over them: "
                           "choose an empty OUT or delete them")
