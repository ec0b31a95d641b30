"""The project's own error types: what a user can act on, as opposed to a bug.

Every error lerobot-wds raises on purpose (a bad source, a damaged shard, an OUT packed with other
options, an option out of range) derives from :class:`LeRobotWdsError`, and its message names the
file, shard, episode or option at fault. The CLI prints these (and ``OSError``s, which name their
path) as one line; anything else is a bug and shows its traceback.
"""

from __future__ import annotations


class LeRobotWdsError(Exception):
    """Base of every error lerobot-wds raises on purpose; the message says what is at fault."""


class UsageError(LeRobotWdsError, ValueError):
    """An option or argument out of range; the message names it and says what it accepts."""


class MissingDependency(LeRobotWdsError, ImportError):
    """An optional dependency a feature needs is not installed; the message says how to install it."""
