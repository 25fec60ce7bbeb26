"""The sweep driver's view of its trials: a live table and Prometheus gauges.

Ray Tune exports no metrics of its own. ``SweepProgress`` (a Tune callback in
the driver) counts trials by state and tracks the best metric so far, and
publishes them through ``ray.util.metrics`` (``ray_raylift_sweep_trials{sweep,
state}``, ``ray_raylift_sweep_best_metric{sweep,metric}``), refreshed every
``REFRESH_S`` (a Ray gauge set once disappears after about 30 s).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ray.tune import Callback

from raylift.specs.resolve import Objective
from raylift.tuning.trial import trial_run_name

REFRESH_S = 5.0
STATES = ("pending", "running", "terminated", "stopped_early", "errored", "paused")


@dataclass
class TrialRow:
    """One trial in the live table: its state, sampled config and metric so far."""

    trial_id: str
    status: str
    config: dict[str, Any]
    last: dict[str, Any] = field(default_factory=dict)
    best: float | None = None

    @property
    def run_name(self) -> str:
        return trial_run_name(self.trial_id)


class SweepProgress(Callback):
    def __init__(
        self,
        sweep: str,
        objective: Objective,
        on_update: Callable[[list[TrialRow]], None] | None = None,
    ) -> None:
        self.sweep, self.objective = sweep, objective
        self.metric = objective.metric
        self.on_update = on_update
        self.rows: dict[str, Any] = {}
        self.best: float | None = None
        self._gauges: dict[str, Any] | None = None
        self._published = 0.0
        self._finished: set[str] = set()  # trials whose last step was reported

    # ---------------------------------------------------------------- Tune hooks

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        row = self._row(trial)
        row.last = {k: result.get(k) for k in (self.metric, "epoch", "step") if k in result}
        if finished_result(result):
            self._finished.add(trial.trial_id)
        value = result.get(self.metric)
        if isinstance(value, int | float):
            if row.best is None or self._better(value, row.best):
                row.best = float(value)
            if self.best is None or self._better(value, self.best):
                self.best = float(value)
        self._changed(trials)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        # Tune calls this before it marks the trial TERMINATED.
        done = trial.trial_id in self._finished or finished_result(trial.last_result or {})
        self._changed(trials, ended={trial.trial_id: "terminated" if done else "stopped_early"})

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._changed(trials, ended={trial.trial_id: "errored"})

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        for trial in trials:  # every status and last result is final now
            self._row(trial).status = state_of(trial)
        self._changed([])

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._changed(trials)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if time.monotonic() - self._published >= REFRESH_S:
            self._changed(trials)

    # ---------------------------------------------------------------- internals

    def _better(self, value: float, than: float) -> bool:
        return self.objective.better(value, than)

    def _row(self, trial: Any) -> Any:
        row = self.rows.get(trial.trial_id)
        if row is None:
            row = self.rows[trial.trial_id] = TrialRow(trial.trial_id, "pending", {})
        row.config = dict(trial.config or {})
        return row

    def _changed(self, trials: list[Any], ended: dict[str, str] | None = None) -> None:
        ended = ended or {}
        for trial in trials:
            row = self._row(trial)
            if row.status in ("terminated", "stopped_early", "errored"):
                continue  # final: Tune's status may lag behind what this callback saw
            row.status = ended.get(trial.trial_id) or state_of(trial)
        if self.on_update is not None:
            with contextlib.suppress(Exception):  # the display must never stop the sweep
                self.on_update(list(self.rows.values()))
        self._publish()

    def _publish(self) -> None:
        self._published = time.monotonic()
        with contextlib.suppress(Exception):  # metrics must never stop the sweep
            gauges = self._gauges or self._make_gauges()
            counts = dict.fromkeys(STATES, 0)
            for row in self.rows.values():
                counts[row.status] = counts.get(row.status, 0) + 1
            for state, count in counts.items():
                gauges["trials"].set(count, tags={"sweep": self.sweep, "state": state})
            if self.best is not None:
                gauges["best"].set(self.best, tags={"sweep": self.sweep, "metric": self.metric})

    def _make_gauges(self) -> dict[str, Any]:
        from ray.util.metrics import Gauge

        self._gauges = {
            "trials": Gauge(
                "raylift_sweep_trials",
                description="Trials of a sweep by state.",
                tag_keys=("sweep", "state"),
            ),
            "best": Gauge(
                "raylift_sweep_best_metric",
                description="Best value of the sweep's metric so far.",
                tag_keys=("sweep", "metric"),
            ),
        }
        return self._gauges


def finished_result(result: dict[str, Any]) -> bool:
    """The result of a trial's last step (the trial trained all its steps)."""
    return int(result.get("step", 0)) >= int(result.get("total_steps", 1 << 62))


def state_of(trial: Any) -> str:
    """Tune's trial status in raylift's words; a trial a scheduler stopped is stopped_early."""
    status = str(getattr(trial, "status", "PENDING")).lower()
    if status == "terminated" and not finished_result(getattr(trial, "last_result", {}) or {}):
        return "stopped_early"
    return status
