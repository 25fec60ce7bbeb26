"""Ray Train V2's ``ElasticScalingPolicy``, patched: a fresh view, a checkpoint before a resize.

Ray 2.60 sizes a restart from the resources its AutoscalingCoordinator reserved for
the run; the coordinator refreshes its view every 20 s and the policy caches the
answer for 1 s, so right after a node loss a restart is sized for the old cluster
and waits out the worker-group start timeout. ``install()`` patches the class, in
the controller's process only:

- each decision asks the coordinator to recompute its view
  (``get_reserved_resources(recompute=True)``), and the cached answer is dropped
  when a running group stops;
- sizing a restart leaves out draining and unreachable nodes (``nodes.py``); a
  running group keeps its draining node, so Train's preemption notice gets the
  workers a checkpoint first;
- a resize of a running group is held: the policy returns Ray's ``NoopDecision`` and
  posts a ``CheckpointBeforeResize`` to the ``ResizeLink`` it was handed; raylift's
  callback asks the workers and reports the registered checkpoint back; once
  ``resize.resize_due`` says so, the policy returns the held ``ResizeDecision``.

The policy only returns decisions: no calls to workers and no module state in a
decision. The link is handed over once (``offer`` in the callback's
``after_controller_start``, claimed in the policy's next ``after_controller_state_update``):
Ray runs each Train controller in an actor process of its own.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from raylift.ray_compat.nodes import nodes_to_leave_out, without_nodes
from raylift.ray_compat.requirements import Requirement
from raylift.ray_compat.resize import (
    RESIZE_CHECKPOINT_WAIT_S,
    CheckpointBeforeResize,
    ResizeLink,
    checkpoint_first,
    resize_due,
)

ELASTIC = "ray.train.v2._internal.execution.scaling_policy.elastic"
POLICY = "ray.train.v2._internal.execution.scaling_policy.scaling_policy"
CONTROLLER = "ray.train.v2._internal.execution.controller.controller"
COORDINATOR = "ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator"
REQUIRES = [
    Requirement(ELASTIC, "ElasticScalingPolicy.make_decision_for_non_running_worker_group"),
    Requirement(ELASTIC, "ElasticScalingPolicy.make_decision_for_running_worker_group"),
    Requirement(ELASTIC, "ElasticScalingPolicy._get_reserved_resources"),
    Requirement(ELASTIC, "ElasticScalingPolicy.GET_RESERVED_RESOURCES_INTERVAL_S"),
    Requirement(
        ELASTIC,
        "ElasticScalingPolicy.__init__",
        uses=("_latest_reserved_resources_query_time", "_latest_reserved_resources"),
    ),
    Requirement(ELASTIC, "ElasticScalingPolicy.after_controller_state_update"),
    Requirement(ELASTIC, "ray"),
    Requirement(ELASTIC, "time_monotonic"),
    Requirement(ELASTIC, "AUTOSCALING_REQUESTS_GET_TIMEOUT_S"),
    Requirement(ELASTIC, "NoopDecision"),
    Requirement(ELASTIC, "ResizeDecision"),
    Requirement(POLICY, "ScalingPolicy._autoscaling_coordinator"),
    Requirement(POLICY, "ScalingPolicy.after_controller_start", uses=("_requester_id",)),
    Requirement(
        COORDINATOR, "_AutoscalingCoordinatorActor.get_reserved_resources", uses=("recompute",)
    ),
    # The hook order the handover and the callback's acting rely on: the policy decides,
    # then every controller callback (the policy first) sees the state update.
    Requirement(
        CONTROLLER, "TrainController._step", uses=("make_decision_for_running_worker_group",)
    ),
    Requirement(CONTROLLER, "TrainController._set_state", uses=("after_controller_state_update",)),
    Requirement(CONTROLLER, "TrainController.__init__", uses=("self._scaling_policy,",)),
]

logger = logging.getLogger(__name__)

_MARK = "_raylift_patched"
_offered: list[ResizeLink] = []  # at most one: handed from the callback to the policy


def offer(link: ResizeLink) -> None:
    """Hand ``link`` to this process's elastic policy (it claims it at its next state update)."""
    _offered[:] = [link]


def _claim() -> ResizeLink | None:
    return _offered.pop() if _offered else None


def install() -> bool:
    """Patch ``ElasticScalingPolicy`` in this process (idempotent). False: Ray lacks what
    the patch needs, so its own policy stays, with a warning."""
    from raylift.ray_compat import check

    try:
        from ray.train.v2._internal.execution.scaling_policy import elastic
    except ImportError:
        elastic = None
    if elastic is not None and getattr(elastic.ElasticScalingPolicy, _MARK, False):
        return True
    gaps = check(REQUIRES)
    if elastic is None or gaps:
        logger.warning(
            "raylift: unexpected Ray version (missing %s); elastic restarts use Ray's defaults",
            ", ".join(gaps),
        )
        return False
    _patch(elastic)
    return True


def _patch(elastic: Any) -> None:
    policy = elastic.ElasticScalingPolicy
    non_running = policy.make_decision_for_non_running_worker_group
    running = policy.make_decision_for_running_worker_group
    state_update = policy.after_controller_state_update

    def after_controller_state_update(self: Any, previous_state: Any, current_state: Any) -> None:
        if "_raylift_link" not in self.__dict__:
            self._raylift_link = _claim()
        state_update(self, previous_state, current_state)

    def make_decision_for_non_running_worker_group(self: Any) -> Any:
        self._raylift_held = None  # a restart ends any held resize
        if self.__dict__.get("_raylift_was_running"):
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
        link: ResizeLink | None = self.__dict__.get("_raylift_link")
        held: tuple[CheckpointBeforeResize, Any] | None = self.__dict__.get("_raylift_held")
        now = time.monotonic()
        if held is not None and link is not None:
            ask, decision = held
            due = resize_due(
                ask,
                registered_at=link.registered_at,
                ask_failed=link.ask_failed(ask),
                now=now,
                wait_s=RESIZE_CHECKPOINT_WAIT_S,
            )
            if not due:
                return elastic.NoopDecision()
            self._raylift_held = None
            return decision
        decision = running(self, worker_group_state, worker_group_status)
        proposed = decision.num_workers if isinstance(decision, elastic.ResizeDecision) else None
        ask = checkpoint_first(
            proposed, worker_group_state.num_workers, now=now, can_ask=link is not None
        )
        if ask is None or link is None:
            return decision
        self._raylift_held = (ask, decision)
        link.post(ask)
        return elastic.NoopDecision()

    def _get_reserved_resources(self: Any) -> Any:
        """Ray's own method, with ``recompute=True``, less the nodes a restart must avoid."""
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
            if self.__dict__.get("_raylift_sizing_restart") and reserved:
                reserved = without_nodes(reserved, nodes_to_leave_out(reserved))
        except Exception:
            logger.warning("raylift: could not get the reserved resources", exc_info=True)
        finally:
            self._latest_reserved_resources_query_time = elastic.time_monotonic()
            self._latest_reserved_resources = reserved
        return reserved

    policy.after_controller_state_update = after_controller_state_update
    policy.make_decision_for_non_running_worker_group = make_decision_for_non_running_worker_group
    policy.make_decision_for_running_worker_group = make_decision_for_running_worker_group
    policy._get_reserved_resources = _get_reserved_resources
    setattr(policy, _MARK, True)


def is_installed() -> bool:
    """Whether this process's ``ElasticScalingPolicy`` is patched."""
    from ray.train.v2._internal.execution.scaling_policy import elastic

    return bool(getattr(elastic.ElasticScalingPolicy, _MARK, False))
