"""``python -m raylift.ops.devnode start ...``: Ray's own ``ray start``, kept on 127.0.0.1.

``ray start`` replaces 127.0.0.1 with the host's routable IP, and its servers
then listen on every interface. A Ray that believes multi-node is off (the
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` Ray uses on macOS) keeps 127.0.0.1, and
its servers listen on loopback only, but it refuses to start a worker node.
This runs Ray's CLI unchanged for a dev cluster's nodes (all on this host):
every process it spawns inherits the setting, and this process alone is allowed
to join as a worker node with 127.0.0.1 as its IP. Tied to Ray 2.60's
``ray._private`` layout, like ``training/recovery.py``.
"""

from __future__ import annotations

import os
import sys

LOOPBACK = "127.0.0.1"


def main() -> None:
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # inherited by every Ray process
    from ray._private import ray_constants, services

    ray_constants.ENABLE_RAY_CLUSTER = True  # this CLI may join a head as a worker node
    services.get_node_ip_address = lambda address=None: LOOPBACK
    from ray.scripts.scripts import main as ray_main

    sys.argv = ["ray", *sys.argv[1:]]
    ray_main()


if __name__ == "__main__":
    main()
