"""Faster elastic recovery on Ray Train V2: size restarts from a fresh view of the cluster.

Ray 2.60's ``ElasticScalingPolicy`` sizes a restart from the resources its
AutoscalingCoordinator reserved for the run. The coordinator refreshes its view
of the cluster every 20 s and the policy caches the answer for 1 s, so right
after a node is lost the restart is sized for the old cluster: its placement
group cannot be placed and Train waits out ``RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S``
(60 s by default) before trying again smaller. We measured 72-76 s from a node
loss to training on the survivors; growing back waited for the next 20 s tick.

``ElasticRecovery`` is a controller callback that, in the controller's
process only, makes the policy ask the coordinator to recompute its view
(``get_reserved_resources(recompute=True)``) whenever it decides a size, drop
the cached answer when a running group stops, and, when it sizes a restart,
leave out nodes that are draining (a node being preempted must not get the
restarted workers). A running group is not shrunk because a node is draining:
that restart would come before Train's preemption notice has let the workers
checkpoint, and lose the steps since the last periodic one. Together
with a 10 s start timeout (``raylift.ops.connect.WORKER_ENV_DEFAULTS``) a node loss
is back to training in 10-20 s on this 2-core machine (benchmarks/recovery.py).

Growing is a restart too, from the latest checkpoint. Before returning a
decision to resize a running group (grow, or shrink should Ray's policy ever
decide one), the patched policy asks the workers to checkpoint (through each
worker actor's ``execute``; see ``interrupts.py``) and holds the decision until
that checkpoint is reported (at most ``RESIZE_CHECKPOINT_WAIT_S``), so a resize
loses no steps.

A node that dies without warning (SIGKILL, power loss) stays alive in the
GCS until it misses ``health_check_failure_threshold`` health checks, seconds
after its workers' deaths have failed the group. A restart sized in that window
asks for the dead node's slots and waits out the start timeout. So when it
sizes a restart the patched policy also leaves out nodes whose raylet no
longer accepts a TCP connection (``unreachable_nodes``).

This patches private Ray internals, so it is tied to the pinned Ray (2.60.0):
``install`` checks for the attributes it needs and leaves Ray's own behaviour
in place, with a warning, when they are missing.
"""

from __future__ import annotations

import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray.train.v2._internal.execution.callback import ControllerCallback, ReportCallback

logger = logging.getLogger(__name__)

_MARK = "_raylift_fresh_view"
RESIZE_CHECKPOINT_WAIT_S = 30.0
# A raylet that does not accept a connection within this long is taken for dead
# when a restart is sized (the GCS will say so a few seconds later anyway).
RAYLET_PROBE_TIMEOUT_S = 0.5
# When the controller last registered a checkpoint taken for a resize (all ranks
# reported it; reports lag training, so an older periodic one may come later).
_resize_checkpoint_registered_at = float("-inf")


class ElasticRecovery(ControllerCallback, ReportCallback):
    """Controller callback: patches the policy (``install``) and notes registered checkpoints."""

    def after_controller_start(self, train_run_context: Any) -> None:
        install()

    def after_report(self, training_report: Any, metrics: list[dict[str, Any]]) -> None:
        global _resize_checkpoint_registered_at
        resize = any(m.get("checkpoint_reason") == "resize" for m in metrics)
        if training_report.checkpoint is not None and resize:
            from ray.train.v2._internal.util import time_monotonic

            _resize_checkpoint_registered_at = time_monotonic()


def install() -> bool:
    """Patch ``ElasticScalingPolicy`` in this process (idempotent). True if patched."""
    from ray.train.v2._internal.execution.scaling_policy import elastic

    policy = elastic.ElasticScalingPolicy
    if getattr(policy, _MARK, False):
        return True
    needed = (
        "_get_reserved_resources",
        "make_decision_for_non_running_worker_group",
        "make_decision_for_running_worker_group",
        "GET_RESERVED_RESOURCES_INTERVAL_S",
    )
    if not all(hasattr(policy, name) for name in needed):
        logger.warning("raylift: unexpected Ray version; elastic restarts use Ray's defaults")
        return False

    non_running = policy.make_decision_for_non_running_worker_group
    running = policy.make_decision_for_running_worker_group

    def make_decision_for_non_running_worker_group(self: Any) -> Any:
        self._raylift_pending_resize = None
        if getattr(self, "_raylift_was_running", False):
            # The group just stopped: an answer cached while it ran is stale.
            self._raylift_was_running = False
            self._latest_reserved_resources_query_time = float("-inf")
        self._raylift_sizing_restart = True
        try:
            return non_running(self)
        finally:
            self._raylift_sizing_restart = False

    def make_decision_for_running_worker_group(
        self: Any, worker_group_state: Any, worker_group_status: Any
    ) -> Any:
        self._raylift_was_running = True
        pending = getattr(self, "_raylift_pending_resize", None)
        if pending is not None:
            return _finish_resize(self, pending)
        decision = running(self, worker_group_state, worker_group_status)
        resizing = (
            isinstance(decision, elastic.ResizeDecision)
            and decision.num_workers != worker_group_state.num_workers
        )
        if resizing and _request_checkpoint(worker_group_state.workers):
            self._raylift_pending_resize = (elastic.time_monotonic(), decision)
            return elastic.NoopDecision()
        return decision

    def _get_reserved_resources(self: Any) -> Any:
        since = elastic.time_monotonic() - self._latest_reserved_resources_query_time
        if since < self.GET_RESERVED_RESOURCES_INTERVAL_S:
            return self._latest_reserved_resources
        reserved = None
        try:
            reserved = elastic.ray.get(
                self._autoscaling_coordinator.get_reserved_resources.remote(
                    self._requester_id, recompute=True
                ),
                timeout=elastic.AUTOSCALING_REQUESTS_GET_TIMEOUT_S,
            )
            if getattr(self, "_raylift_sizing_restart", False):
                # Only a restart leaves out draining nodes: a running group keeps
                # its drained node until it goes, so that Train's preemption notice
                # gets the workers a checkpoint first (interrupts.py).
                reserved = without_unreachable_nodes(without_draining_nodes(reserved))
        except Exception:
            logger.warning("raylift: could not get the reserved resources", exc_info=True)
        finally:
            self._latest_reserved_resources_query_time = elastic.time_monotonic()
            self._latest_reserved_resources = reserved
        return reserved

    policy.make_decision_for_non_running_worker_group = make_decision_for_non_running_worker_group
    policy.make_decision_for_running_worker_group = make_decision_for_running_worker_group
    policy._get_reserved_resources = _get_reserved_resources
    setattr(policy, _MARK, True)
    return True


def _request_checkpoint(workers: list[Any]) -> bool:
    """Ask every worker to checkpoint at its next check; False if that failed."""
    from raylift.training.interrupts import request_resize_checkpoint

    try:
        for worker in workers:
            worker.execute_async(request_resize_checkpoint)
    except Exception:
        logger.warning("raylift: could not ask for a checkpoint before resizing", exc_info=True)
        return False
    return True


def _finish_resize(policy: Any, pending: tuple[float, Any]) -> Any:
    """The held grow decision once a checkpoint is registered (or the wait is over).

    Registered means every rank reported it (``after_report``): returning the
    decision as soon as rank 0's report arrives would stop the group before
    Ray registers the checkpoint.
    """
    from ray.train.v2._internal.execution.scaling_policy import elastic

    asked_at, decision = pending
    registered = _resize_checkpoint_registered_at >= asked_at
    if registered or elastic.time_monotonic() - asked_at > RESIZE_CHECKPOINT_WAIT_S:
        policy._raylift_pending_resize = None
        return decision
    return elastic.NoopDecision()


def without_draining_nodes(reserved: dict[str, Any] | None) -> dict[str, Any] | None:
    """The reserved resources less those on nodes that are being drained."""
    if not reserved:
        return reserved
    try:
        import ray._private.state

        draining = set(ray._private.state.state.get_draining_nodes())
    except Exception:
        return reserved
    return {node: resources for node, resources in reserved.items() if node not in draining}


def without_unreachable_nodes(reserved: dict[str, Any] | None) -> dict[str, Any] | None:
    """The reserved resources less those on nodes whose raylet refuses a connection."""
    if not reserved:
        return reserved
    try:
        dead = unreachable_nodes(set(reserved))
    except Exception:
        logger.debug("raylift: could not probe the nodes", exc_info=True)
        return reserved
    if dead:
        logger.info("raylift: leaving out unreachable node(s) %s", ", ".join(sorted(dead)))
    return {node: resources for node, resources in reserved.items() if node not in dead}


def unreachable_nodes(node_ids: set[str]) -> set[str]:
    """Those of ``node_ids`` the GCS calls alive whose raylet port does not answer."""
    import ray

    addresses = {
        node["NodeID"]: (node["NodeManagerAddress"], int(node["NodeManagerPort"]))
        for node in ray.nodes()
        if node.get("Alive") and node.get("NodeID") in node_ids
    }
    if not addresses:
        return set()
    with ThreadPoolExecutor(max_workers=min(16, len(addresses))) as pool:
        answers = dict(
            zip(addresses, pool.map(_accepts_connection, addresses.values()), strict=True)
        )
    return {node for node, alive in answers.items() if not alive}


def _accepts_connection(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=RAYLET_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False
