"""A local Prometheus on a Ray cluster's metrics (what ``raylift monitor`` runs).

Ray's head writes the scrape targets of every node (each node's metrics export
port) to ``<session dir>/prom_metrics_service_discovery.json``. When that file is
on this machine (the cluster's head, or an embedded Ray) Prometheus reads it
(``file_sd``); otherwise raylift writes the same list from ``ray.nodes()`` and
refreshes it while Prometheus runs. Prometheus listens on 127.0.0.1, keeps its
data in a temporary folder, loads raylift's alert rules and is stopped (and its
folder removed) when ``raylift monitor`` exits.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raylift.errors import ClusterError
from raylift.ray_compat.session import session_dir

REPO = Path(__file__).resolve().parents[3]  # platform/raylift/ops/ -> the checkout
RULES_DIR = REPO / "cluster" / "prometheus" / "rules"
DASHBOARDS_DIR = REPO / "dashboards"
DISCOVERY_FILE = "prom_metrics_service_discovery.json"
SCRAPE_INTERVAL_S = 5
READY_TIMEOUT_S = 30.0


@dataclass
class Prometheus:
    """A running Prometheus that this process started."""

    process: subprocess.Popen[bytes]
    url: str
    folder: Path
    targets_file: Path
    owns_targets: bool  # raylift writes the targets (no local discovery file)
    log: Path
    rules: list[Path] = field(default_factory=list)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop Prometheus and remove its folder."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def find_prometheus(binary: str | None = None) -> str:
    found = shutil.which(binary or "prometheus")
    if not found:
        raise ClusterError(
            f"no Prometheus binary {binary or 'prometheus'!r} on PATH: install it (Debian/Ubuntu: "
            "apt-get install prometheus; or a release from prometheus.io) or pass --prometheus PATH"
        )
    return found


def discovery_file() -> Path | None:
    """Ray's service-discovery file for the connected cluster, if it is on this machine."""
    session = session_dir()
    path = Path(session) / DISCOVERY_FILE if session else None
    return path if path is not None and path.is_file() else None


def node_targets() -> list[dict[str, Any]]:
    """``file_sd`` content for every alive node's metrics export port (from ``ray.nodes()``)."""
    import ray

    targets = [
        f"{node['NodeManagerAddress']}:{node['MetricsExportPort']}"
        for node in ray.nodes()
        if node.get("Alive") and node.get("MetricsExportPort")
    ]
    return [{"labels": {"job": "ray"}, "targets": sorted(targets)}]


def write_targets(path: Path) -> None:
    """Write ``node_targets()`` atomically (Prometheus re-reads the file on change)."""
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(node_targets()))
    os.replace(scratch, path)


def config_text(targets_file: Path, rules: list[Path], interval_s: int) -> str:
    config = {
        "global": {"scrape_interval": f"{interval_s}s", "evaluation_interval": f"{interval_s}s"},
        "rule_files": [str(path) for path in rules],
        "scrape_configs": [
            {"job_name": "ray", "file_sd_configs": [{"files": [str(targets_file)]}]},
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def start_prometheus(
    port: int = 9090,
    *,
    binary: str | None = None,
    rules_dir: Path = RULES_DIR,
    interval_s: int = SCRAPE_INTERVAL_S,
) -> Prometheus:
    """Start Prometheus on 127.0.0.1:``port`` scraping the connected Ray cluster."""
    executable = find_prometheus(binary)
    folder = Path(tempfile.mkdtemp(prefix="raylift-prometheus-"))
    rules = sorted(p for p in rules_dir.glob("*.yml") if not p.name.endswith(".test.yml"))
    ray_file = discovery_file()
    targets = ray_file or folder / "targets.json"
    if ray_file is None:
        write_targets(targets)
    config = folder / "prometheus.yml"
    config.write_text(config_text(targets, rules, interval_s))
    log = folder / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                executable,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches raylift, which stops it
        )
    running = Prometheus(
        process, f"http://127.0.0.1:{port}", folder, targets, ray_file is None, log, rules
    )
    try:
        wait_ready(running)
    except ClusterError:
        running.stop()
        raise
    return running


def wait_ready(prometheus: Prometheus, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if prometheus.process.poll() is not None:
            tail = prometheus.log.read_text(errors="replace")[-1500:]
            raise ClusterError(f"Prometheus exited at start-up:\n{tail}")
        try:
            with urllib.request.urlopen(prometheus.url + "/-/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise ClusterError(f"Prometheus was not ready at {prometheus.url} in {timeout_s:.0f} s")


def grafana_hint(prometheus_url: str) -> str:
    """How to show raylift's dashboards on this Prometheus."""
    provisioning = DASHBOARDS_DIR / "provisioning"
    return (
        f"Grafana: add a Prometheus data source at {prometheus_url} and import "
        f"{DASHBOARDS_DIR}/raylift-*.json (Dashboards > New > Import), or start Grafana with "
        f"GF_PATHS_PROVISIONING={provisioning} RAYLIFT_DASHBOARDS={DASHBOARDS_DIR} (it "
        "provisions the data source, http://127.0.0.1:9090, and the dashboards)"
    )
