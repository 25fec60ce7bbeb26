"""Remove placement groups whose creating actor died: what a stopped trial leaves behind.

A trial's TorchTrainer controller (an actor the trial's actor owns) creates the
worker group's placement group. A non-detached placement group lives as long as
its *job*, not its creating actor, so when Tune stops a trial (ASHA, PBT, the
time budget) the group stays reserved until the sweep ends, unless Train's own
``PlacementGroupCleaner`` removes it. That cleaner covers only a group that was
registered after its worker group started (one still waiting for resources is
never registered) and it depends on the State API. A leaked group holds CPUs or
GPUs, so later trials wait out their start timeout forever.

``ReapOrphanedPlacementGroups`` (a Tune callback in the sweep driver) asks the
GCS every ``INTERVAL_S`` for this job's placement groups whose creator actor is
dead, and removes them. Groups created by a driver (Tune's own trial groups),
detached groups and other jobs' groups are never touched.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from ray.tune import Callback

INTERVAL_S = 2.0
log = logging.getLogger(__name__)


def orphaned_placement_groups(job_id_hex: str) -> list[str]:
    """Hex ids of job ``job_id_hex``'s live placement groups whose creating actor is dead."""
    from ray import ActorID
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    table = gcs_pb2.PlacementGroupTableData
    live = (table.PENDING, table.PREPARED, table.CREATED, table.RESCHEDULING)
    orphans = []
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        group = table.FromString(raw)
        creator = ActorID(group.creator_actor_id)
        if (
            group.creator_job_id.hex() == job_id_hex
            and not creator.is_nil()  # nil: made by a driver
            and not group.is_detached
            and group.state in live
            and (group.creator_actor_dead or _actor_is_dead(creator.hex()))
        ):
            orphans.append(group.placement_group_id.hex())
    return orphans


def _actor_is_dead(actor_hex: str) -> bool:
    """Whether the GCS has the actor as DEAD. Needed besides ``creator_actor_dead``:
    a group whose creation reached the GCS after its creator died (a Train
    controller retrying its worker group as the trial is stopped) never gets that
    flag."""
    from ray._private.state import state

    info = state.actor_table(actor_hex)
    return bool(info) and info.get("State") == "DEAD"


def remove_orphaned_placement_groups() -> list[str]:
    """Remove this job's orphaned placement groups; their hex ids."""
    import ray
    from ray.util.placement_group import PlacementGroup

    removed = []
    for pg_hex in orphaned_placement_groups(ray.get_runtime_context().get_job_id()):
        ray.util.remove_placement_group(PlacementGroup(ray.PlacementGroupID.from_hex(pg_hex)))
        removed.append(pg_hex)
    return removed


class ReapOrphanedPlacementGroups(Callback):
    """Tune callback: remove stopped trials' leftover placement groups as the sweep runs."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last = 0.0
        self.removed: list[str] = []

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if time.monotonic() - self._last < self.interval_s:
            return
        self._last = time.monotonic()
        with contextlib.suppress(Exception):  # housekeeping must never stop the sweep
            for pg_hex in remove_orphaned_placement_groups():
                log.info("removed placement group %s left by a stopped trial", pg_hex)
                self.removed.append(pg_hex)
