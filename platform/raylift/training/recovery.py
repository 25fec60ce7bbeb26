"""Faster elastic recovery on Ray Train V2: size restarts from a fresh view of the cluster.

Ray 2.60's ``ElasticScalingPolicy`` sizes a restart from the resources its
AutoscalingCoordinator reserved for the run. The coordinator refreshes its view
of the cluster every 20 s and the policy caches the answer for 1 s, so right
after a node is lost the restart is sized for the old cluster: its placement
group cannot be placed and Train waits out ``RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S``
(60 s by default) before trying again smaller. We measured 72-76 s from a node
loss to training on the survivors; growing back waited for the next 20 s tick.

``FreshResourceView`` is a controller callback that, in the controller's
process only, makes the policy ask the coordinator to recompute its view
(``get_reserved_resources(recompute=True)``) whenever it decides a size, drop
the cached answer when a running group stops, and leave out nodes that are
draining (a node being preempted must not get the restarted workers). Together
with a 10 s start timeout (``raylift.cluster.WORKER_ENV_DEFAULTS``) a node loss
is back to training in 10-20 s on this 2-core machine (benchmarks/recovery.py).

This patches private Ray internals, so it is tied to the pinned Ray (2.60.0):
``install`` checks for the attributes it needs and leaves Ray's own behaviour
in place, with a warning, when they are missing.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.train.v2._internal.execution.callback import ControllerCallback

logger = logging.getLogger(__name__)

_MARK = "_raylift_fresh_view"


class FreshResourceView(ControllerCallback):
    """Controller callback: see ``install``."""

    def after_controller_start(self, train_run_context: Any) -> None:
        install()


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
        if getattr(self, "_raylift_was_running", False):
            # The group just stopped: an answer cached while it ran is stale.
            self._raylift_was_running = False
            self._latest_reserved_resources_query_time = float("-inf")
        return non_running(self)

    def make_decision_for_running_worker_group(self: Any, *args: Any, **kwargs: Any) -> Any:
        self._raylift_was_running = True
        return running(self, *args, **kwargs)

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
            reserved = without_draining_nodes(reserved)
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
