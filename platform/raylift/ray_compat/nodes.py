"""Nodes a restarted worker group must not be sized for: draining ones and dead raylets.

Draining nodes come from Ray's private GCS state API; a raylet that refuses a TCP
connection is taken for dead before the GCS says so (it waits for
``health_check_failure_threshold`` missed checks).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from raylift.ray_compat.requirements import Requirement

REQUIRES = [
    Requirement("ray._private.state", "state"),
    Requirement("ray._private.state", "GlobalState.get_draining_nodes"),
]

# A raylet that does not accept a connection within this long is taken for dead when a
# restart is sized (the GCS will say so a few seconds later anyway).
RAYLET_PROBE_TIMEOUT_S = 0.5

logger = logging.getLogger(__name__)
T = TypeVar("T")


def without_nodes(reserved: Mapping[str, T] | None, nodes: Iterable[str]) -> dict[str, T] | None:
    """``reserved`` (resources by node id) less ``nodes``; None and empty stay as they are."""
    if not reserved:
        return None if reserved is None else {}
    leave_out = set(nodes)
    return {node: value for node, value in reserved.items() if node not in leave_out}


def draining_nodes() -> set[str]:
    """Hex ids of the nodes being drained (preemption, scale-down); empty if unknown."""
    try:
        from ray._private.state import state

        return set(state.get_draining_nodes())
    except Exception:
        logger.debug("raylift: could not list the draining nodes", exc_info=True)
        return set()


def unreachable_nodes(node_ids: Iterable[str]) -> set[str]:
    """Those of ``node_ids`` the GCS calls alive whose raylet port does not answer."""
    import ray

    wanted = set(node_ids)
    addresses = {
        node["NodeID"]: (node["NodeManagerAddress"], int(node["NodeManagerPort"]))
        for node in ray.nodes()
        if node.get("Alive") and node.get("NodeID") in wanted
    }
    if not addresses:
        return set()
    with ThreadPoolExecutor(max_workers=min(16, len(addresses))) as pool:
        answers = dict(
            zip(addresses, pool.map(accepts_connection, addresses.values()), strict=True)
        )
    return {node for node, alive in answers.items() if not alive}


def nodes_to_leave_out(node_ids: Iterable[str]) -> set[str]:
    """Of ``node_ids``, those a restart must not use: draining or unreachable."""
    candidates = set(node_ids)
    if not candidates:
        return set()
    leave_out = draining_nodes() & candidates
    try:
        dead = unreachable_nodes(candidates - leave_out)
    except Exception:
        logger.debug("raylift: could not probe the nodes", exc_info=True)
        dead = set()
    if dead:
        logger.info("raylift: leaving out unreachable node(s) %s", ", ".join(sorted(dead)))
    return leave_out | dead


def accepts_connection(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=RAYLET_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False
