"""Where shard tasks run: ``local`` (this process or a process pool) or ``ray`` (tasks on a Ray cluster).

An executor only runs :func:`lerobot_wds.packer.task.run_task` for each task it is given and hands each
completion record back to the driver as it arrives; planning, resuming (skipping shards whose
record and tar check out) and writing the manifest stay in :func:`lerobot_wds.packer.pack.pack`, one code path
for both. A task writes its tar and completion record to OUT itself, so on Ray, OUT must be
storage every node reaches (s3://, a shared mount), and a driver restarted after a crash finds
what finished tasks left there.

Ray: one task per shard (``num_cpus=1``), the opened source put in the object store once. Tasks
that raise are retried (``max_retries`` times, also when a worker dies); errors in the data
(:class:`SourceError`, :class:`ClipError`) come back as values instead, since retrying cannot fix
them, and are raised at the driver with their message.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import os
import signal
import sys
import logging
import multiprocessing as mp
from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import LeRobotWdsError, MissingDependency, UsageError
from .clip import ClipError
from .source import Source, SourceError
from .task import ShardTask, is_local, run_task

log = logging.getLogger(__name__)

#: Called once per finished task with its completion record.
OnDone = Callable[[ShardTask, dict], None]
#: Called per episode written with its bytes (serial runs only: progress inside a task).
OnEpisode = Callable[[int], None]

_WORKER_SOURCE: Source | None = None


def _init_worker(source: Source) -> None:
    """Pool initializer: keep the source, and die with the parent (Linux: PR_SET_PDEATHSIG), so a
    SIGKILLed ``pack`` leaves no workers writing into OUT."""
    global _WORKER_SOURCE
    _WORKER_SOURCE = source
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
        if os.getppid() == 1:  # the parent died before the call
            os._exit(1)


def _run_in_worker(task: ShardTask) -> dict:
    if _WORKER_SOURCE is None:
        raise RuntimeError("worker process started without its source (pool initializer not run)")
    return run_task(_WORKER_SOURCE, task)


@dataclass(frozen=True)
class LocalExecutor:
    """``workers`` processes on this machine; one worker (or one task) runs in this process."""

    workers: int = 1

    def run(self, source: Source, tasks: Sequence[ShardTask], on_done: OnDone, on_episode: OnEpisode) -> None:
        if self.workers == 1 or len(tasks) <= 1:
            for t in tasks:
                on_done(t, run_task(source, t, on_episode=on_episode))
            return
        # fork: workers inherit the imported modules and the opened source; spawn elsewhere.
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with cf.ProcessPoolExecutor(min(self.workers, len(tasks)), mp_context=ctx,
                                    initializer=_init_worker, initargs=(source,)) as pool:
            futures = {pool.submit(_run_in_worker, t): t for t in tasks}
            try:
                for fut in cf.as_completed(futures):
                    on_done(futures[fut], fut.result())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # stop at the first failure; running tasks end
                raise


class TaskFailed(LeRobotWdsError, RuntimeError):
    """A shard task kept failing after its retries; the message names the shard and the last error."""


@dataclass(frozen=True)
class _DataError:
    """A task's non-retryable error, carried back to the driver as a value."""

    error: Exception


def _ray_task(source: Source, task: ShardTask) -> dict | _DataError:
    try:
        return run_task(source, task)
    except (SourceError, ClipError) as e:
        return _DataError(e)


def import_ray():
    """Ray, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as e:
        raise MissingDependency("--executor ray needs Ray: pip install 'lerobot-wds[ray]'") from e
    return ray


@dataclass(frozen=True)
class RayExecutor:
    """Shard tasks as Ray tasks on the cluster at ``address`` (None: the one already initialised in
    this process, else Ray's default: ``RAY_ADDRESS`` or a new local instance)."""

    address: str | None = None
    max_retries: int = 3

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise UsageError(f"max_retries={self.max_retries}: must be ≥ 0")

    def run(self, source: Source, tasks: Sequence[ShardTask], on_done: OnDone, on_episode: OnEpisode) -> None:
        if not tasks:
            return
        ray = import_ray()
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False)
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        if nodes > 1 and is_local(tasks[0].out_fs):
            log.warning("OUT %s is a local path but the Ray cluster has %d nodes: each node writes its shards to "
                        "its own disk; use storage all nodes reach (s3://…, a shared mount)", tasks[0].out_root, nodes)
        remote = ray.remote(num_cpus=1, max_retries=self.max_retries, retry_exceptions=True)(_ray_task)
        src = ray.put(source)
        pending = {remote.remote(src, t): t for t in tasks}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                task = pending.pop(done[0])
                try:
                    result = ray.get(done[0])
                except ray.exceptions.RayError as e:
                    eps = [ep.episode_index for ep in task.episodes]
                    raise TaskFailed(
                        f"{task.name} (episodes {eps[0]}–{eps[-1]}): failed {self.max_retries + 1} time(s), last with "
                        f"{str(e).strip().splitlines()[-1]}; shards already written are kept: re-run to resume"
                    ) from e
                if isinstance(result, _DataError):
                    raise result.error
                on_done(task, result)
        finally:
            for ref in pending:  # a failure stops the run: finished shards stay for a resume
                ray.cancel(ref)


def make_executor(
    kind: str, workers: int = 1, address: str | None = None, retries: int = 3
) -> LocalExecutor | RayExecutor:
    """``"local"`` (process pool of ``workers``) or ``"ray"`` (cluster at ``address``, ``retries`` per task)."""
    if kind == "local":
        return LocalExecutor(workers)
    if kind == "ray":
        return RayExecutor(address, retries)
    raise UsageError(f"executor {kind!r}: choose 'local' or 'ray'")
