"""A Train worker's report queue: wait until the controller has taken this worker's reports."""

from __future__ import annotations

import time

from raylift.ray_compat.requirements import Requirement

CONTEXT = "ray.train.v2._internal.execution.context"
REQUIRES = [
    Requirement(CONTEXT, "get_train_context"),
    Requirement(CONTEXT, "TrainContext.get_result_queue"),
    # The controller's poll takes a report off the queue and marks it done.
    Requirement(
        "ray.train.v2._internal.execution.worker_group.worker",
        "RayTrainWorker.poll_status",
        uses=("task_done",),
    ),
]


def wait_for_reports_taken(timeout_s: float, poll_s: float = 0.05) -> bool:
    """Block until the controller has taken every report this worker queued (``ray.train.report``).

    True once taken; False after ``timeout_s``, or outside a Train worker (best effort:
    a report still queued is taken at the next poll, or lost with the process).
    """
    try:
        from ray.train.v2._internal.execution.context import get_train_context

        reports = get_train_context().get_result_queue()
    except Exception:
        return False
    deadline = time.monotonic() + timeout_s
    while reports.unfinished_tasks:
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
    return True
