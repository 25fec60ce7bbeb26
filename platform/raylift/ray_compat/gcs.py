"""The GCS's placement-group and actor tables, read through Ray's private state API.

Rows come back as plain values (``PlacementGroupRow``), so what to do with them is
decided by plain functions (``raylift.tuning.orphans``). Needs a connected Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

from raylift.ray_compat.requirements import Requirement

REQUIRES = [
    Requirement("ray._private.state", "state"),
    Requirement("ray._private.state", "GlobalState._connect_and_get_accessor"),
    Requirement("ray._private.state", "GlobalState.actor_table"),
    Requirement("ray._private.state", "GlobalState._gen_actor_info", uses=('"State"',)),
    Requirement(
        "ray.core.generated.gcs_pb2",
        "PlacementGroupTableData",
        uses=(
            "placement_group_id",
            "creator_job_id",
            "creator_actor_id",
            "creator_actor_dead",
            "is_detached",
            "state",
        ),
    ),
    Requirement("ray.core.generated.gcs_pb2", "PlacementGroupTableData.RESCHEDULING"),
]


@dataclass(frozen=True)
class PlacementGroupRow:
    """One placement group as the GCS has it."""

    id_hex: str
    job_hex: str  # the job that created it
    creator_actor_hex: str | None  # None: created by a driver
    detached: bool
    live: bool  # pending, prepared, created or rescheduling (not removed)
    creator_dead: bool  # the GCS has flagged its creating actor dead


def placement_groups() -> list[PlacementGroupRow]:
    """Every placement group in the GCS's table, of every job."""
    from ray import ActorID
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    table = gcs_pb2.PlacementGroupTableData
    live = {table.PENDING, table.PREPARED, table.CREATED, table.RESCHEDULING}
    rows = []
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        group = table.FromString(raw)
        creator = ActorID(group.creator_actor_id)
        rows.append(
            PlacementGroupRow(
                id_hex=group.placement_group_id.hex(),
                job_hex=group.creator_job_id.hex(),
                creator_actor_hex=None if creator.is_nil() else creator.hex(),
                detached=group.is_detached,
                live=group.state in live,
                creator_dead=group.creator_actor_dead,
            )
        )
    return rows


def actor_state(actor_hex: str) -> str | None:
    """The GCS's state of the actor (``ALIVE``, ``DEAD``, ...); None if it has none."""
    from ray._private.state import state

    info = state.actor_table(actor_hex)
    return info.get("State") if info else None
