"""Tune housekeeping on a real local Ray (a whole sweep in-process, with its gauges, runs in
test_monitoring.py; the CLI sweeps in tests/e2e/test_cli_tune.py)."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.slow


def test_placement_groups_of_dead_actors_are_removed_and_no_others(ray_local: None) -> None:
    """What a stopped trial's controller leaves (one group ready, one still pending) goes;
    a driver's group (as Tune's own trial groups are) stays."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    from raylift.tuning.orphans import (
        _actor_is_dead,
        orphaned_placement_groups,
        remove_orphaned_placement_groups,
    )

    @ray.remote(num_cpus=0)
    class Controller:
        def reserve(self, cpus: float) -> str:
            return placement_group([{"CPU": cpus}]).id.hex()

    job = ray.get_runtime_context().get_job_id()
    drivers = placement_group([{"CPU": 0.5}])
    ray.get(drivers.ready(), timeout=30)
    controller = Controller.remote()
    ready = ray.get(controller.reserve.remote(1))
    pending = ray.get(controller.reserve.remote(2))  # more than is free: stays pending
    assert orphaned_placement_groups(job) == []  # its creator is alive
    assert not _actor_is_dead(controller._actor_id.hex())

    ray.kill(controller)
    deadline = time.monotonic() + 30
    while set(orphaned_placement_groups(job)) != {ready, pending}:
        assert time.monotonic() < deadline, orphaned_placement_groups(job)
        time.sleep(0.2)
    # A group that reached the GCS after its creator died has no creator_actor_dead
    # flag (a Train controller retrying as its trial is stopped): the creator's own
    # state is checked too.
    assert _actor_is_dead(controller._actor_id.hex())
    assert not _actor_is_dead("ff" * 16)  # unknown: not ours to judge
    assert sorted(remove_orphaned_placement_groups()) == sorted([ready, pending])
    assert orphaned_placement_groups(job) == []
    table = ray.util.placement_group_table()
    assert table[ready]["state"] == table[pending]["state"] == "REMOVED"
    assert table[drivers.id.hex()]["state"] == "CREATED"
    remove_placement_group(drivers)
