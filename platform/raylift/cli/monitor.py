"""``raylift monitor``: a local Prometheus on the cluster's metrics, until Ctrl-C."""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

import click

from raylift.cli.common import State, address_option, console, handle_errors

TARGETS_REFRESH_S = 10.0


@click.command()
@address_option
@click.option("--port", default=9090, show_default=True, help="Prometheus port on 127.0.0.1.")
@click.option(
    "--prometheus",
    "binary",
    default=None,
    metavar="PATH",
    help="Prometheus binary (default: `prometheus` on PATH).",
)
@handle_errors
def monitor(address: str | None, port: int, binary: str | None) -> None:
    """Run Prometheus on 127.0.0.1 scraping the cluster's metrics, with raylift's alert rules."""
    from raylift.ops.connect import connect, resolve_address
    from raylift.ops.monitor import find_prometheus, grafana_hint, start_prometheus, write_targets

    find_prometheus(binary)  # before connecting: a missing binary is the likelier problem
    where = connect(resolve_address(address) or "auto", verbose=State.verbose)
    prometheus = start_prometheus(port, binary=binary)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # also when started as a background job
    source = "raylift's node list" if prometheus.owns_targets else "Ray's discovery file"
    console.print(f"Prometheus: {prometheus.url} (scraping {where} via {source})", highlight=False)
    console.print(f"  targets: {prometheus.targets_file}", highlight=False)
    console.print(f"  data: {prometheus.folder}", highlight=False)
    console.print(f"  alert rules: {', '.join(p.name for p in prometheus.rules) or 'none'}")
    console.print(grafana_hint(prometheus.url), highlight=False)
    console.print("Ctrl-C stops Prometheus")
    try:
        while prometheus.process.poll() is None:
            time.sleep(TARGETS_REFRESH_S)
            if prometheus.owns_targets:
                write_targets(prometheus.targets_file)
        console.print(f"Prometheus exited (code {prometheus.process.returncode}); see its log")
        sys.exit(1)
    except KeyboardInterrupt:
        prometheus.stop()
        console.print("Prometheus stopped")
