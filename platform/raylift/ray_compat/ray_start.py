"""Ray's own ``ray start`` CLI, kept on 127.0.0.1 (a dev cluster's nodes, all on one host).

``ray start`` replaces 127.0.0.1 with the host's routable IP, and its servers then
listen on every interface. A Ray that believes multi-node is off (the
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` Ray uses on macOS) keeps 127.0.0.1 and its
servers listen on loopback only, but it refuses to start a worker node. ``main``
sets the variable for every process Ray spawns, lets this process alone join as a
worker node, and pins its node IP to 127.0.0.1, then runs Ray's CLI unchanged.
"""

from __future__ import annotations

import os
import sys

from raylift.ray_compat.requirements import Requirement

LOOPBACK = "127.0.0.1"
REQUIRES = [
    Requirement("ray._private.ray_constants", "ENABLE_RAY_CLUSTER"),
    Requirement("ray._private.services", "get_node_ip_address"),
    Requirement(
        "ray.scripts.scripts",
        "start.callback",
        uses=("ENABLE_RAY_CLUSTER", "services.get_node_ip_address"),
    ),
    Requirement("ray.scripts.scripts", "main"),
]


def main(argv: list[str] | None = None) -> None:
    """Run ``ray ARGV...`` (e.g. ``start --head --block ...``) with every address on loopback."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # inherited by every Ray process
    from ray._private import ray_constants, services

    ray_constants.ENABLE_RAY_CLUSTER = True  # this CLI may join a head as a worker node
    services.get_node_ip_address = lambda address=None: LOOPBACK
    from ray.scripts.scripts import main as ray_main

    sys.argv = ["ray", *(sys.argv[1:] if argv is None else argv)]
    ray_main()
