"""Training metrics exported through Ray's metrics agent (``ray.util.metrics``).

Ray serves them on each node's metrics export port with a ``ray_`` prefix
(``ray_raylift_train_restarts_total``...), where Prometheus scrapes them.
Gauges vanish ~30 s after their last update, so rank 0 sets them at every report.
"""

from __future__ import annotations

from typing import Any


class TrainTelemetry:
    """Rank 0's metrics for one run (tag ``run``)."""

    def __init__(self, run: str) -> None:
        from ray.util.metrics import Counter, Gauge

        tags = ("run",)
        self.tags = {"run": run}
        self.restarts = Counter(
            "raylift_train_restarts",
            description="Restarts of the worker group from a checkpoint (failures and resizes).",
            tag_keys=tags,
        )
        self.steps_lost = Counter(
            "raylift_train_steps_lost",
            description="Optimizer steps redone after restarts.",
            tag_keys=tags,
        )
        self.gauges = {
            name: Gauge(f"raylift_train_{name}", description=text, tag_keys=tags)
            for name, text in {
                "step": "Optimizer steps completed.",
                "world_size": "Training workers in the current attempt.",
                "samples_per_s": "Training throughput, samples per second.",
                "train_loss": "Mean training loss over the last report window.",
            }.items()
        }

    def recovered(self, recovery: dict[str, Any]) -> None:
        """The driver saw a recovery: count it and the steps it lost.

        Counted in the driver, which outlives the workers: a worker that exits
        soon after incrementing a counter may never have it exported.
        """
        self.restarts.inc(1.0, tags=self.tags)
        if recovery["steps_lost"] > 0:  # Ray's Counter.inc refuses 0
            self.steps_lost.inc(float(recovery["steps_lost"]), tags=self.tags)

    def report(self, metrics: dict[str, Any]) -> None:
        for name, gauge in self.gauges.items():
            if name in metrics:
                gauge.set(float(metrics[name]), tags=self.tags)
