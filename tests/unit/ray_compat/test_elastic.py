"""The patched elastic policy and raylift's callback, driven as Train's controller drives them.

No cluster: Ray's own ``ElasticScalingPolicy`` with its reserved-resources query and
resource requests stubbed, and a worker group that only records what it was asked to run.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from raylift.ray_compat import elastic
from raylift.ray_compat.resize import CheckpointBeforeResize

CPU = {"CPU": 1.0}


class Group:
    """Train's WorkerGroup, as far as the callback uses it."""

    def __init__(self) -> None:
        self.ran: list[Any] = []

    def execute_async(self, fn: Any) -> list[Any]:
        self.ran.append(fn)
        return []


@pytest.fixture
def policy() -> Iterator[Any]:
    from ray.train import ScalingConfig
    from ray.train.v2._internal.execution.scaling_policy import ElasticScalingPolicy

    config = ScalingConfig(num_workers=(1, 2), elastic_resize_monitor_interval_s=0)
    made = ElasticScalingPolicy(config)
    made._coordinator_client = SimpleNamespace(maybe_send_resource_request=lambda *a: None)
    made.reserved = {"n1": CPU}
    made._get_reserved_resources = lambda: made.reserved  # what the coordinator answers
    yield made
    elastic._offered.clear()


def running(policy: Any, num_workers: int) -> Any:
    state = SimpleNamespace(start_time=float("-inf"), num_workers=num_workers)
    return policy.make_decision_for_running_worker_group(state, None)


def controller_start(policy: Any) -> tuple[Any, Group]:
    """What the controller calls before its first running decision."""
    from raylift.training.recovery import ElasticRecovery

    recovery, group = ElasticRecovery(), Group()
    policy.after_controller_start = lambda context: None
    recovery.after_controller_start(SimpleNamespace(run_id="r"))  # patches, offers the link
    policy.after_controller_state_update(None, None)  # the policy first: claims it
    recovery.after_controller_state_update(None, None)
    recovery.after_worker_group_start(group)
    return recovery, group


def test_a_grow_waits_for_the_resize_checkpoint(policy: Any) -> None:
    from ray.train.v2._internal.execution.scaling_policy import NoopDecision, ResizeDecision

    from raylift.training.interrupts import request_resize_checkpoint

    recovery, group = controller_start(policy)
    assert type(running(policy, 1)) is NoopDecision  # one node: nothing to do
    policy.reserved = {"n1": CPU, "n2": CPU}  # a node came back
    assert type(running(policy, 1)) is NoopDecision  # held: a checkpoint first
    assert group.ran == []  # the policy only decides ...
    recovery.after_controller_state_update(None, None)
    assert group.ran == [request_resize_checkpoint]  # ... the callback asks the workers
    assert type(running(policy, 1)) is NoopDecision  # not registered yet
    recovery.after_report(SimpleNamespace(checkpoint=None), [{"checkpoint_reason": "resize"}])
    recovery.after_report(SimpleNamespace(checkpoint=object()), [{"checkpoint_reason": "step"}])
    assert type(running(policy, 1)) is NoopDecision  # neither is the resize checkpoint
    recovery.after_report(SimpleNamespace(checkpoint=object()), [{"checkpoint_reason": "resize"}])
    assert running(policy, 1) == ResizeDecision(num_workers=2, resources_per_worker=CPU)
    recovery.after_controller_state_update(None, None)
    assert group.ran == [request_resize_checkpoint]  # asked once


def test_a_resize_goes_ahead_when_the_workers_cannot_be_asked(policy: Any) -> None:
    from ray.train.v2._internal.execution.scaling_policy import NoopDecision, ResizeDecision

    recovery, _ = controller_start(policy)
    recovery.before_worker_group_shutdown(None)  # no group to ask
    policy.reserved = {"n1": CPU, "n2": CPU}
    assert type(running(policy, 1)) is NoopDecision
    recovery.after_controller_state_update(None, None)  # the ask fails
    assert running(policy, 1) == ResizeDecision(num_workers=2, resources_per_worker=CPU)


def test_a_restart_drops_a_held_resize(policy: Any) -> None:
    from ray.train.v2._internal.execution.scaling_policy import NoopDecision, ResizeDecision

    recovery, _ = controller_start(policy)
    policy.reserved = {"n1": CPU, "n2": CPU}
    assert type(running(policy, 1)) is NoopDecision
    recovery.after_controller_state_update(None, None)
    decision = policy.make_decision_for_non_running_worker_group()  # the group failed
    assert decision == ResizeDecision(num_workers=2, resources_per_worker=CPU)
    assert policy._raylift_held is None
    policy.reserved = {"n1": CPU}  # then Ray's policy shrinks the running group: asked anew
    assert type(running(policy, 2)) is NoopDecision
    assert recovery._link.take() == CheckpointBeforeResize(1, policy._raylift_held[0].decided_at)


def test_without_raylift_s_callback_the_policy_decides_as_ray_s(policy: Any) -> None:
    from ray.train.v2._internal.execution.scaling_policy import ResizeDecision

    assert elastic.install() and elastic.install() and elastic.is_installed()  # idempotent
    policy.after_controller_state_update(None, None)  # nothing offered
    policy.reserved = {"n1": CPU, "n2": CPU}
    assert running(policy, 1) == ResizeDecision(num_workers=2, resources_per_worker=CPU)
