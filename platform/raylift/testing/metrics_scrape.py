"""Read a value from this node's Ray metrics endpoint (what Prometheus scrapes)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable

from raylift.ray_compat.session import metrics_export_port


def scrape_metric(
    name: str,
    timeout_s: float = 40.0,
    until: Callable[[float], bool] | None = None,
    **labels: str,
) -> float | None:
    """The value of ``name{labels...}`` (polls: Ray exports ~10 s after a record).

    With ``until``, keeps polling until the value satisfies it (a gauge may still
    show an older value); returns the last value seen.
    """
    port = metrics_export_port()
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        for line in body.decode().splitlines():
            if line.startswith(name + "{") and all(label in line for label in wanted):
                seen = float(line.rsplit(" ", 1)[1])
                if until is None or until(seen):
                    return seen
        time.sleep(1.0)
    return seen
