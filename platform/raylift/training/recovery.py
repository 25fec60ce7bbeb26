"""Faster elastic recovery on Ray Train V2, and a checkpoint before every resize.

Ray 2.60's ``ElasticScalingPolicy`` sizes a restart from the resources its
AutoscalingCoordinator reserved for the run. The coordinator refreshes its view
of the cluster every 20 s and the policy caches the answer for 1 s, so right
after a node is lost the restart is sized for the old cluster: its placement
group cannot be placed and Train waits out ``RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S``
(60 s by default) before trying again smaller; growing back waited for the
next 20 s tick.

``ElasticRecovery`` is a controller callback that, in the controller's process
only, patches the policy (``raylift.ray_compat.elastic``): it asks the
coordinator to recompute its view whenever it decides a size, drops the cached
answer when a running group stops, and, when it sizes a restart, leaves out
nodes that are draining (a node being preempted must not get the restarted
workers) and nodes whose raylet no longer accepts a TCP connection (a node that
died without warning stays alive in the GCS until it misses
``health_check_failure_threshold`` health checks, seconds after its workers'
deaths failed the group). A running group is not shrunk because a node is
draining: that restart would come before Train's preemption notice has let the
workers checkpoint, and lose the steps since the last periodic one. Together
with a short start timeout (``raylift.training.trainer.ELASTIC_START_TIMEOUT_S``)
a node loss is back to training in seconds (measured: benchmarks/results/recovery.json).

Growing is a restart too, from the latest checkpoint. When Ray's policy decides
to resize a running group (grow, or shrink should it ever decide one), the
patched policy holds the decision and returns a ``CheckpointBeforeResize``
request instead (to Ray, a ``NoopDecision``). This callback acts on it right
after the decision (``after_controller_state_update``): it asks every worker to
checkpoint (``interrupts.request_resize_checkpoint``) and, once every rank has
reported that checkpoint (``after_report``), tells the policy, which then returns
the held resize (at the latest after ``RESIZE_CHECKPOINT_WAIT_S``; at once if
the workers could not be asked), so a resize loses no steps.

The patch touches private Ray internals and is tied to the pinned Ray (2.60.0):
when ``raylift.ray_compat.check`` finds what it needs missing, Ray's own policy
stays, with a warning.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from raylift.ray_compat import elastic, train_callbacks
from raylift.ray_compat.resize import RESIZE_CHECKPOINT_WAIT_S, ResizeLink
from raylift.training.interrupts import request_resize_checkpoint

__all__ = ["RESIZE_CHECKPOINT_WAIT_S", "ElasticRecovery", "is_resize_checkpoint"]

logger = logging.getLogger(__name__)


def is_resize_checkpoint(has_checkpoint: bool, metrics: list[dict[str, Any]]) -> bool:
    """Whether a registered report (every rank's ``metrics``) is a checkpoint taken to resize."""
    return has_checkpoint and any(m.get("checkpoint_reason") == "resize" for m in metrics)


class ElasticRecovery(
    train_callbacks.ControllerCallback,
    train_callbacks.ReportCallback,
    train_callbacks.WorkerGroupCallback,
):
    """Controller callback: patches the elastic policy and carries out its checkpoint requests."""

    def __init__(self) -> None:
        self._link: ResizeLink | None = None  # made in the controller's process
        self._group: Any = None  # the running worker group

    # ControllerCallback

    def after_controller_start(self, train_run_context: Any) -> None:
        if elastic.install():
            self._link = ResizeLink()
            elastic.offer(self._link)

    def after_controller_state_update(self, previous_state: Any, current_state: Any) -> None:
        """Right after each decision: ask the workers for the checkpoint the policy wants."""
        ask = self._link.take() if self._link is not None else None
        if ask is None or self._link is None:
            return
        try:
            if self._group is None:
                raise RuntimeError("no running worker group")
            train_callbacks.run_on_workers(self._group, request_resize_checkpoint)
            logger.info("raylift: checkpointing before resizing to %d workers", ask.num_workers)
        except Exception:
            logger.warning("raylift: could not ask for a checkpoint before resizing", exc_info=True)
            self._link.could_not_ask(ask)

    # ReportCallback

    def after_report(self, training_report: Any, metrics: list[dict[str, Any]]) -> None:
        """Registered means every rank reported it: resizing as soon as rank 0's report
        arrived would stop the group before Ray registers the checkpoint."""
        if self._link is not None and is_resize_checkpoint(
            training_report.checkpoint is not None, metrics
        ):
            self._link.checkpoint_registered(time.monotonic())

    # WorkerGroupCallback

    def after_worker_group_start(self, worker_group: Any) -> None:
        self._group = worker_group

    def before_worker_group_shutdown(self, worker_group: Any) -> None:
        self._group = None
