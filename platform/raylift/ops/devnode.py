"""``python -m raylift.ops.devnode start ...``: Ray's own ``ray start``, kept on 127.0.0.1.

What ``raylift.ops.devcluster`` runs for each node of a dev cluster (all on this
host). The loopback switches touch private Ray names: see
``raylift.ray_compat.ray_start``.
"""

from __future__ import annotations

from raylift.ray_compat.ray_start import main

if __name__ == "__main__":
    main()
