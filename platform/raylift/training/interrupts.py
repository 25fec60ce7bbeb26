"""Interrupts: every reason to checkpoint now, combined at one check (``InterruptCheck``).

Two warnings reach a training worker before it is taken away:

- **SIGTERM** to the worker process (a pod deletion, a spot reclaim handled by
  the node agent, ``kill PID``). Ray's own handler exits at once. raylift's
  handler (installed on each worker's main thread by ``SigtermCheckpoint``, a
  Train worker callback) only raises a flag; the training loop checkpoints at
  its next check, then the process exits the way Ray's handler would. If no
  checkpoint happens within ``RAYLIFT_SIGTERM_GRACE_S`` (25 s, under
  Kubernetes' default 30 s grace period), it exits anyway.
- **A node drain** with reason preemption (``ray drain-node --reason
  DRAIN_NODE_REASON_PREEMPTION``, the Ray autoscaler, KubeRay). Ray 2.60's
  preemption watcher tells the workers (``ray.train.get_preemption_info``);
  raylift checkpoints once and keeps training until the node is gone, then Ray
  restarts the group from that checkpoint, against
  ``FailureConfig.max_preemption_failures``.

A graceful stop comes from the driver: ``raylift jobs stop`` (Ray's job
supervisor sends the entrypoint SIGTERM), a Kubernetes pod deletion or ``kill
PID`` reach the ``raylift train`` driver, not the workers. The driver's handler
(``StopOnSigterm``) only sets a flag; a watcher thread then publishes a stop
request under the run's key in Ray's internal key-value store (the GCS). Rank 0
looks for it at each check, every rank agrees through the same all-reduce, the
workers report a checkpoint with reason ``stop`` and return. The run is
recorded as stopped and ``--resume`` continues it from that checkpoint. The
driver must outlive the checkpoint: raylift submits jobs with
``RAY_JOB_STOP_WAIT_TIME_S`` (Ray's grace before SIGKILL, 3 s by default) set
to ``STOP_WAIT_S``.

A fourth request comes from the controller: before resizing the group (a node
came back), ``recovery.py`` asks the workers to checkpoint, so the restart at
the bigger size loses nothing.

Ranks must agree on when to checkpoint (a checkpoint is a collective), so the
flags are combined at a *check*: a tiny all-reduce every few steps, about every
``CHECK_INTERVAL_S`` of training (rank 0 sizes the step interval from the step
time it measures and shares it in the same all-reduce, so every rank calls the
collective at the same steps).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

from raylift.ray_compat import kv
from raylift.ray_compat.train_callbacks import WorkerCallback
from raylift.ray_compat.train_context import wait_for_reports_taken

logger = logging.getLogger(__name__)

CHECK_INTERVAL_S = 2.0
GRACE_ENV = "RAYLIFT_SIGTERM_GRACE_S"
DEFAULT_GRACE_S = 25.0
NAMESPACE = "raylift"  # of the stop requests in Ray's internal key-value store
STOP_WAIT_S = 60

_sigterm = threading.Event()  # a SIGTERM arrived
_resize = threading.Event()  # the controller is about to resize the group
_release = threading.Event()  # the checkpoint is taken (or the grace ran out): exit now
_previous_handler: Any = signal.SIG_DFL


def _on_sigterm(signum: int, frame: Any) -> None:
    if _release.is_set():
        _exit_like_before(signum, frame)
        return
    if _sigterm.is_set():
        return  # a repeated SIGTERM while the checkpoint is being taken
    _sigterm.set()
    grace_s = float(os.environ.get(GRACE_ENV, DEFAULT_GRACE_S))
    logger.warning("SIGTERM: checkpointing before exit (at most %.0f s)", grace_s)
    timer = threading.Timer(grace_s, release_sigterm)
    timer.daemon = True
    timer.start()


def _exit_like_before(signum: int, frame: Any) -> None:
    if callable(_previous_handler):
        _previous_handler(signum, frame)
    sys.exit(1)


def install_sigterm_handler() -> bool:
    """Install the handler; only possible on the main thread. True if installed."""
    global _previous_handler
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if current is not _on_sigterm:
        _previous_handler = current
        signal.signal(signal.SIGTERM, _on_sigterm)
    _sigterm.clear()
    _release.clear()
    return True


def sigterm_received() -> bool:
    return _sigterm.is_set()


def request_resize_checkpoint() -> None:
    """Run on a worker (by the controller, see ``recovery.py``) before a resize."""
    _resize.set()


def release_sigterm() -> None:
    """Let the pending SIGTERM take its course: re-deliver it to this process.

    The main thread runs the handler the next time it runs Python (Ray's worker
    main thread does at each task, e.g. the controller's status poll).
    """
    if not _sigterm.is_set() or _release.is_set():
        return
    _release.set()
    os.kill(os.getpid(), signal.SIGTERM)


def exit_after_sigterm(step: int) -> None:
    """The checkpoint is on storage: let the SIGTERM end this worker process.

    First give the controller a moment to take the report (it polls every
    0.5 s), so Ray registers the checkpoint and the driver sees it.
    """
    wait_for_reports_taken(5.0)
    release_sigterm()
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        time.sleep(0.1)  # the main thread exits the process at its next task
    raise RuntimeError(f"SIGTERM: checkpointed at step {step}; stopping this worker")


class SigtermCheckpoint(WorkerCallback):
    """Train worker callback: installs the SIGTERM handler in each worker process."""

    def after_init_train_context(self) -> None:
        if not install_sigterm_handler():
            logger.warning("SIGTERM handler not installed: not on the worker's main thread")


class InterruptCheck:
    """Per rank: decides, in agreement with every rank, when to checkpoint early.

    ``due(step)`` is called after every optimizer step on every rank; it returns
    the reason ("stop", "sigterm", "resize" or "preemption") once, at the first
    check after a request reached any rank, else None.
    """

    def __init__(
        self,
        rank: int,
        world: int,
        start_step: int = 0,
        interval_s: float = CHECK_INTERVAL_S,
        stop_key: str | None = None,
    ) -> None:
        self.rank, self.world = rank, world
        self.stop_key = stop_key
        self.interval_s = interval_s
        self.next_check = start_step + 1  # then 2, 4, 8... steps apart, up to interval_s
        self._last_check_time = time.perf_counter()
        self._last_check_step = start_step
        self._notice_handled = False
        self._sigterm_handled = False

    def due(self, step: int) -> str | None:
        if step < self.next_check:
            return None
        local_sigterm = sigterm_received() and not self._sigterm_handled
        local_stop = self.rank == 0 and self._stop_requested()
        stop, sigterm, resize, interval = self._agree(
            step, local_stop, local_sigterm, _resize.is_set()
        )
        self.next_check = step + interval
        if stop:
            return "stop"
        if sigterm:
            self._sigterm_handled = True
            return "sigterm"
        if resize:
            _resize.clear()
            return "resize"
        if not self._notice_handled and self._preemption_notice():
            self._notice_handled = True
            return "preemption"
        return None

    def _agree(
        self, step: int, local_stop: bool, local_sigterm: bool, local_resize: bool
    ) -> tuple[bool, bool, bool, int]:
        """All-reduce (any stop, SIGTERM or resize request; rank 0's next interval in steps)."""
        now = time.perf_counter()
        steps = max(step - self._last_check_step, 1)
        per_step = (now - self._last_check_time) / steps
        self._last_check_time, self._last_check_step = now, step
        # At most double the interval each time: early steps are not typical
        # (reports and checkpoints slow some steps down).
        interval = max(1, min(2 * steps, round(self.interval_s / max(per_step, 1e-6)), 1000))
        if self.world == 1:
            return local_stop, local_sigterm, local_resize, interval
        import torch
        import torch.distributed as dist

        flags = torch.tensor(
            [
                int(local_stop),
                int(local_sigterm),
                int(local_resize),
                interval if self.rank == 0 else 0,
            ]
        )
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        return bool(flags[0]), bool(flags[1]), bool(flags[2]), int(flags[3])

    def _stop_requested(self) -> bool:
        if not self.stop_key:
            return False
        try:
            return stop_requested(self.stop_key)
        except Exception:  # outside Ray (unit tests) or the GCS is briefly away
            return False

    @staticmethod
    def _preemption_notice() -> bool:
        """Ray's drain notice (a barrier over all ranks, a few ms)."""
        import ray.train

        try:
            return ray.train.get_preemption_info() is not None
        except Exception:  # outside a Train worker (unit tests) or Ray without it
            return False


# ------------------------------------------------------------ driver stop


def new_key(run: str) -> str:
    return f"stop/{run}/{uuid.uuid4().hex}"


def request_stop(key: str) -> None:
    kv.put(key, b"1", namespace=NAMESPACE)


def stop_requested(key: str) -> bool:
    return kv.exists(key, namespace=NAMESPACE)


def clear_stop(key: str) -> None:
    kv.delete(key, namespace=NAMESPACE)


class StopOnSigterm:
    """In the driver: SIGTERM requests a graceful stop instead of killing the run."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.event = threading.Event()
        self._closed = threading.Event()
        self._previous: Any = None

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():  # a second SIGTERM: do what the previous handler did
            previous = self._previous
            if callable(previous):
                previous(signum, frame)
            else:
                raise SystemExit(128 + signum)
            return
        self.event.set()  # no Ray calls in a signal handler: the watcher publishes it

    def _publish(self) -> None:
        while not self._closed.is_set():
            if self.event.wait(0.5):
                with suppress(Exception):  # Ray is shutting down: the run ends anyway
                    request_stop(self.key)
                return

    @contextmanager
    def installed(self) -> Iterator[StopOnSigterm]:
        on_main = threading.current_thread() is threading.main_thread()
        if on_main:
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        threading.Thread(target=self._publish, daemon=True, name="raylift-stop").start()
        try:
            yield self
        finally:
            self._closed.set()
            if on_main:
                signal.signal(signal.SIGTERM, self._previous)
            with suppress(Exception):
                clear_stop(self.key)
