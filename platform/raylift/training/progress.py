"""Live progress: a Train callback on the controller feeds a queue the driver reads."""

from __future__ import annotations

import contextlib
from typing import Any

from ray.train import Checkpoint, UserCallback


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
