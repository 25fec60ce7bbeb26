"""Stop a run gracefully: SIGTERM to the driver -> checkpoint at the next check, then end.

``raylift jobs stop`` (Ray's job supervisor sends the entrypoint SIGTERM), a
Kubernetes pod deletion or ``kill PID`` reach the ``raylift train`` driver, not
the workers. The driver's handler only sets a flag; a watcher thread then
publishes a stop request under the run's key in Ray's internal key-value store
(the GCS). Rank 0 looks for it at each ``PreemptionCheck`` (about every 2 s of
training), every rank agrees through the same all-reduce, the workers report a
checkpoint with reason ``stop`` and return. The run is recorded as stopped and
``--resume`` continues it from that checkpoint.

The driver must outlive the checkpoint: raylift submits jobs with
``RAY_JOB_STOP_WAIT_TIME_S`` (Ray's grace before SIGKILL, 3 s by default) set
to ``STOP_WAIT_S``.
"""

from __future__ import annotations

import signal
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

NAMESPACE = "raylift"
STOP_WAIT_S = 60


def new_key(run: str) -> str:
    return f"stop/{run}/{uuid.uuid4().hex}"


def request_stop(key: str) -> None:
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(key, b"1", overwrite=True, namespace=NAMESPACE)


def stop_requested(key: str) -> bool:
    from ray.experimental.internal_kv import _internal_kv_exists

    return bool(_internal_kv_exists(key, namespace=NAMESPACE))


def clear_stop(key: str) -> None:
    from ray.experimental.internal_kv import _internal_kv_del

    _internal_kv_del(key, namespace=NAMESPACE)


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
