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
GCS (``raylift.ray_compat.gcs``) every ``INTERVAL_S`` for this job's placement
groups whose creator actor is dead, and removes them. Groups created by a driver
(Tune's own trial groups), detached groups and other jobs' groups are never touched.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from ray.tune import Callback

from raylift.ray_compat import gcs
from raylift.ray_compat.gcs import PlacementGroupRow

INTERVAL_S = 2.0
log = logging.getLogger(__name__)


def orphaned_placement_groups(job_id_hex: str) -> list[str]:
    """Hex ids of job ``job_id_hex``'s live placement groups whose creating actor is dead."""
    return orphans_of(job_id_hex, gcs.placement_groups(), _actor_is_dead)


def orphans_of(
    job_id_hex: str, groups: Iterable[PlacementGroupRow], actor_is_dead: Callable[[str], bool]
) -> list[str]:
    """Of ``groups``, the hex ids of job ``job_id_hex``'s live, non-detached ones made by an
    actor that is dead. Groups a driver made (Tune's own trial groups) are never orphans."""
    return [
        group.id_hex
        for group in groups
        if group.job_hex == job_id_hex
        and group.creator_actor_hex is not None
        and not group.detached
        and group.live
        and (group.creator_dead or actor_is_dead(group.creator_actor_hex))
    ]


def _actor_is_dead(actor_hex: str) -> bool:
    """Whether the GCS has the actor as DEAD. Needed besides ``creator_dead``: a group
    whose creation reached the GCS after its creator died (a Train controller retrying
    its worker group as the trial is stopped) never gets that flag."""
    return gcs.actor_state(actor_hex) == "DEAD"


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
