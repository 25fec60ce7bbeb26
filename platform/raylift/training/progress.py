"""Live progress: a Train callback on the controller feeds a queue the driver reads.

``ProgressCallback`` (on Train's controller) puts rank 0's reports on a queue;
``pump_progress`` (a driver thread) hands them to the display, turns them into
recovery records and metrics, and keeps the run record and metrics history fresh.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from ray.train import Checkpoint, UserCallback

from raylift import storage
from raylift.artifacts.runs import MetricsHistory, RunRecord, now
from raylift.specs.resolve import ResolvedJob

EventHandler = Callable[[dict[str, Any]], None]


class ProgressCallback(UserCallback):
    """Forwards rank 0's reported metrics (and every rank's peak memory) to a queue."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def after_report(
        self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Checkpoint | None
    ) -> None:
        if not metrics:
            return
        event = dict(metrics[0])
        event["checkpoint"] = checkpoint.path if checkpoint is not None else None
        peaks = [m.get("peak_memory_bytes") for m in metrics]
        if all(p is not None for p in peaks):
            event["peak_memory_per_worker"] = peaks
        with contextlib.suppress(Exception):
            self.queue.put_nowait(event)


class RecoveryTracker:
    """Turns progress events into recovery records: restarts and resizes.

    A worker's first report after resuming carries ``resumed_from_step``; the
    steps lost are the last step seen before the failure minus that step.
    """

    def __init__(self, last_step: int = 0) -> None:
        self.last_step = last_step
        self.last_world: int | None = None
        self.restarts = 0
        self.attempt: str | None = None
        self.notice: str | None = None  # an early checkpoint since the last recovery

    def observe(self, event: dict[str, Any]) -> dict[str, Any] | None:
        recovery = None
        attempt = event.get("attempt")
        new_attempt = (
            attempt != self.attempt if attempt else event.get("restarts", 0) > self.restarts
        )
        if new_attempt and "resumed_from_step" in event:
            resumed = int(event["resumed_from_step"])
            before = self.last_world or int(event.get("world_size_before") or 0)
            recovery = {
                "time": now(),
                "kind": "resize" if before and before != event["world_size"] else "restart",
                "from_workers": before,
                "to_workers": event["world_size"],
                "resumed_from_step": resumed,
                "steps_lost": max(0, self.last_step - resumed),
                "notice": self.notice,
            }
            self.restarts = int(event["restarts"])
            self.notice = None
        self.attempt = attempt or self.attempt
        if event.get("checkpoint_reason"):
            self.notice = str(event["checkpoint_reason"])
        self.last_step = int(event.get("step", self.last_step))
        self.last_world = int(event.get("world_size", self.last_world or 0))
        return recovery


def pump_progress(
    queue: Any,
    stop: threading.Event,
    on_event: EventHandler | None,
    record: RunRecord,
    run_dir: str,
    telemetry: Any,
) -> None:
    """Driver thread: hand progress events to the display; keep the record fresh.

    After the run ends (``stop``) it drains what is left, so the last reports (the
    final validation, which Tune's schedulers wait for) are not dropped.
    """
    from raylift.training.telemetry import memory_summary

    tracker = RecoveryTracker(int(record.metrics.get("step", 0)))
    telemetry.keep_fresh(stop)
    history = MetricsHistory(run_dir)
    saved_at = 0.0
    while True:
        try:
            event = queue.get(timeout=0.5)
        except Exception:  # ray.util.queue.Empty, or the queue is gone
            if stop.is_set():
                return  # the run is over and the queue is drained
            continue
        recovery = tracker.observe(event)
        with contextlib.suppress(Exception):  # metrics must never stop the display
            if recovery is not None:
                telemetry.recovered(recovery)
            telemetry.report(event)
        if recovery is not None:
            record.recoveries.append(recovery)
            event = {**event, "recovery": recovery}
        with contextlib.suppress(OSError):
            history.add(event)
        if on_event is not None:
            on_event(event)
        record.metrics = clean_metrics(event)
        record.peak_memory = memory_summary(event, record.peak_memory)
        # Keep the record current (a new driver resuming after this one died reads
        # the last step from it); throttled on remote storage.
        due = time.monotonic() - saved_at >= (0.0 if not storage.is_remote(run_dir) else 10.0)
        if due or event.get("checkpoint") or recovery is not None:
            with contextlib.suppress(OSError):
                record.save(run_dir)
                history.flush()
                saved_at = time.monotonic()


def run_telemetry(job: ResolvedJob) -> Any:
    """The run's metrics (``training/telemetry.py``), published by this driver."""
    from raylift.training.telemetry import TrainTelemetry

    telemetry = TrainTelemetry(job.name, job.objective.metric)
    telemetry.latest.update(
        min_workers=float(job.scaling.min_workers), max_workers=float(job.scaling.max_workers)
    )
    return telemetry


def clean_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe copy without Ray's bookkeeping keys."""
    out = {}
    for key, value in metrics.items():
        if key in ("checkpoint", "recovery", "peak_memory_per_worker") or key.startswith("_"):
            continue
        try:
            json.dumps(value)
        except TypeError:
            value = str(value)
        out[key] = value
    return out
