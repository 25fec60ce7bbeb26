"""Ray Train V2's internal callback interfaces, and running a function on a group's workers.

Train V2 has no public controller or worker callback: raylift's code that must run
in the controller (``ElasticRecovery``) or on each worker's main thread
(``SigtermCheckpoint``) subclasses these. The classes load on first use
(``train_callbacks.WorkerCallback``), so importing this module imports no Ray.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from raylift.ray_compat.requirements import Requirement

CALLBACK = "ray.train.v2._internal.execution.callback"
REQUIRES = [
    Requirement(CALLBACK, "ControllerCallback.after_controller_start"),
    Requirement(CALLBACK, "ControllerCallback.after_controller_state_update"),
    Requirement(CALLBACK, "ReportCallback.after_report"),
    Requirement(CALLBACK, "WorkerGroupCallback.after_worker_group_start"),
    Requirement(CALLBACK, "WorkerGroupCallback.before_worker_group_shutdown"),
    Requirement(CALLBACK, "WorkerCallback.after_init_train_context"),
    Requirement(
        "ray.train.v2._internal.execution.training_report",
        "_TrainingReport.__init__",
        uses=("self.checkpoint",),
    ),
    Requirement("ray.train.v2._internal.execution.worker_group", "WorkerGroup.execute_async"),
]
_CLASSES = ("ControllerCallback", "ReportCallback", "WorkerGroupCallback", "WorkerCallback")


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        from ray.train.v2._internal.execution import callback

        return getattr(callback, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_on_workers(worker_group: Any, fn: Callable[[], Any]) -> None:
    """Start ``fn()`` on every worker of ``worker_group`` (Train's ``WorkerGroup``), not waiting."""
    worker_group.execute_async(fn)
