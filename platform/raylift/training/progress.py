"""Live progress: a Train callback on the controller feeds a queue the driver reads."""

from __future__ import annotations

import contextlib
from typing import Any

from ray.train import Checkpoint, UserCallback


class ProgressCallback(UserCallback):
    """Forwards rank 0's reported metrics to a ``ray.util.queue.Queue``."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def after_report(
        self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Checkpoint | None
    ) -> None:
        if not metrics:
            return
        event = dict(metrics[0])
        event["checkpoint"] = checkpoint.path if checkpoint is not None else None
        with contextlib.suppress(Exception):
            self.queue.put_nowait(event)
