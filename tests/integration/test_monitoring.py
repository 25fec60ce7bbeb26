"""Monitoring against live data: a real Prometheus, started by ``raylift monitor``,
scrapes a real local Ray that ran a PBT sweep (its trials are raylift training runs) and
served the sweep's best model under a bounded load. Then every panel and every
template variable of every dashboard must return data, as Grafana would query them.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from raylift.models.exported import load_export
from raylift.ports import free_port
from raylift.specs.serve import ServeSpec
from raylift.testing.dashboard_queries import (
    load_dashboards,
    panel_queries,
    series_count,
    variable_queries,
)
from raylift.tuning.sweep import load_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[2]
RAYLIFT = str(Path(sys.executable).parent / "raylift")
SWEEP = "monitored"
APP = "monitored"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        shutil.which("prometheus") is None,
        reason="needs Prometheus on PATH (CI installs Debian's prometheus in .ci/run)",
    ),
]


@dataclass
class Live:
    prometheus: str
    monitor: subprocess.Popen[str]
    monitor_log: Path
    record: dict[str, Any]
    progress_rows: list[int]
    codes: list[int]
    sweep_dir: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        answer.raise_for_status()
        return list(answer.json()["data"]["result"])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    import ray
    from ray import serve

    from raylift.serving.deploy import deploy, start_serve
    from raylift.serving.haproxy import use_for_embedded_ray

    tmp = tmp_path_factory.mktemp("monitoring")
    ingress_env = use_for_embedded_ray()  # raylift serve's default ingress
    ray.init(
        num_cpus=2,
        include_dashboard=True,  # Ray's head writes Prometheus' discovery file
        dashboard_host="127.0.0.1",
        dashboard_port=free_port(),
        logging_level=logging.ERROR,
        log_to_driver=False,
    )
    port = free_port()
    log_path = tmp / "monitor.log"
    monitor = subprocess.Popen(
        [
            RAYLIFT,
            "monitor",
            "--address",
            ray.get_runtime_context().gcs_address,
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        live = Live(f"http://127.0.0.1:{port}", monitor, log_path, {}, [], [], tmp / SWEEP)
        _wait(lambda: "Ctrl-C stops Prometheus" in log_path.read_text(), 90, log_path)

        loaded = load_sweep(
            str(ROOT / "jobs" / "sweeps" / "digits-asha.yaml"),
            [
                f"storage.path={tmp}",
                f"name={SWEEP}",
                "num_samples=2",
                "max_concurrent=2",
                # PBT, synchronous: after epoch 1 the worse trial restarts from the
                # better one's checkpoint (its assertions are here to save a sweep).
                "scheduler.type=pbt",
                "scheduler.perturbation_interval=1",
                "scheduler.synch=true",
                "scheduler.quantile_fraction=0.5",
                "space={train.lr: {loguniform: [0.0001, 0.03]}}",
                "trial.train.epochs=2",
                "trial.train.checkpoint_every_epochs=1",
                "trial.train.log_every_steps=5",
                "trial.train.warmup_steps=0",
            ],
        )
        rows_seen: list[int] = []  # Tune pickles the callback: capture nothing else
        live.record = run_sweep(loaded, on_update=lambda rows: rows_seen.append(len(rows)))
        live.progress_rows = rows_seen

        spec = ServeSpec.model_validate(
            {
                "name": APP,
                "port": free_port(),
                "models": [
                    {
                        "name": "digits",
                        "model": {"path": live.record["best"]["export"]},
                        "batching": {"max_batch_size": 8, "batch_wait_timeout_s": 0.005},
                        "resources": {"cpus": 0.5},
                    }
                ],
            }
        )
        start_serve(spec)
        deploy(spec)
        live.codes = _bounded_load(f"http://127.0.0.1:{spec.port}", live.record["best"]["export"])
        # Every request scraped, then a couple more scrapes, before asserting.
        _wait(
            lambda: any(
                float(s["value"][1]) >= len(live.codes)
                for s in live.query(f'sum(ray_raylift_serve_requests_total{{application="{APP}"}})')
            ),
            60,
            log_path,
        )
        time.sleep(12)
        yield live
    finally:
        if monitor.poll() is None:
            monitor.send_signal(signal.SIGINT)
            monitor.wait(timeout=30)
        serve.shutdown()
        ray.shutdown()
        for key in ingress_env:
            os.environ.pop(key, None)


def _bounded_load(base: str, export: str, seconds: float = 20.0) -> list[int]:
    """Requests spread over ``seconds`` (Ray exports every ~10 s and rates need increases
    seen by several scrapes): 4-row requests at ~4/s, every 20th a bad one (400)."""
    import numpy as np

    raw = load_export(export).sample()["inputs"][:4].numpy().astype(np.float32)
    good = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [4, 64], "data": raw.tolist()}]
    }
    bad = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
    codes: list[int] = []
    end = time.monotonic() + seconds
    with httpx.Client(base_url=base, timeout=30) as http:
        while time.monotonic() < end and len(codes) < 1000:
            body = bad if len(codes) % 20 == 19 else good
            codes.append(http.post("/v2/models/digits/infer", json=body).status_code)
            time.sleep(0.25)
    return codes


def _wait(predicate: Any, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout_s:.0f} s; monitor log:\n{log.read_text()}")


def test_the_sweep_ranked_its_trials_and_the_load_was_served(live: Live) -> None:
    trials = live.record["trials"]
    assert live.progress_rows and max(live.progress_rows) == 2  # the live table saw both
    assert [t["status"] for t in trials] == ["done", "done"]
    assert trials[0]["best"] >= trials[1]["best"]  # the leaderboard is ranked
    best = load_export(live.record["best"]["export"])
    assert best.metrics["val_accuracy"] == pytest.approx(trials[0]["best"])
    bad = live.codes[19::20]
    assert bad and set(bad) == {400}
    assert live.codes.count(200) == len(live.codes) - len(bad) >= 40


def test_pbt_restarted_a_trial_from_the_better_ones_checkpoint(live: Live) -> None:
    import json

    runs = [
        json.loads(path.read_text())
        for path in sorted((live.sweep_dir / "trials").glob("*/raylift-run.json"))
    ]
    exploited = [r for r in runs if r.get("started_from")]
    assert exploited, runs
    assert exploited[0]["started_from"]["step"] > 0 and exploited[0]["status"] == "succeeded"
    assert (live.sweep_dir / "best" / "model").is_dir()


def test_prometheus_scrapes_this_hosts_ray_with_raylifts_alert_rules(live: Live) -> None:
    def active_targets() -> list[dict[str, Any]]:
        answer = httpx.get(f"{live.prometheus}/api/v1/targets", timeout=10)
        return list(answer.json()["data"]["activeTargets"])

    # Every target answers a scrape. On a loaded machine one scrape can time out
    # (Ray's agents render their metrics in Python): the next one must succeed.
    deadline = time.monotonic() + 60
    active = active_targets()
    while not (active and all(t["health"] == "up" for t in active)):
        down = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in active]
        assert time.monotonic() < deadline, f"targets not all up after 60 s: {down}"
        time.sleep(2)
        active = active_targets()
    # ray.init resolves 127.0.0.1 to the host's own address (Ray's node IP): this machine.
    import ray

    here = {"127.0.0.1"} | {node["NodeManagerAddress"] for node in ray.nodes()}
    assert {t["labels"]["instance"].rsplit(":", 1)[0] for t in active} <= here, active
    groups = httpx.get(f"{live.prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert "RayliftSweepTrialsErrored" in rules and "RayliftServeNoHealthyReplica" in rules
    assert all(rule["health"] == "ok" for rule in rules.values()), rules
    assert rules["RayliftSweepTrialsErrored"]["state"] == "inactive"  # no trial errored


def test_every_panel_of_every_dashboard_has_data(live: Live) -> None:
    values = {
        "raylift-training": {"run": live.record["trials"][0]["run"]},
        "raylift-tuning": {"sweep": SWEEP},
        "raylift-serving": {"application": APP},
    }
    boards = load_dashboards()
    assert {b["uid"] for b in boards} >= {*values, "raylift-cluster"}
    empty: list[str] = []
    checked = 0
    for board in boards:
        panels: dict[str, list[Any]] = {}
        for query in panel_queries(board, values.get(board["uid"])):
            panels.setdefault(query.panel, []).append(query)
        for title, queries in panels.items():
            if queries[0].optional:
                continue  # GPU-only or language-model-only data
            checked += 1
            if not any(series_count(live.prometheus, q.expr) for q in queries):
                empty.append(f"{board['uid']} / {title}: {[q.expr for q in queries]}")
    assert checked >= 40
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_every_dashboard_variable_lists_what_ran(live: Live) -> None:
    from raylift.testing.dashboard_queries import label_values

    runs = {t["run"] for t in live.record["trials"]}
    listed: dict[str, list[str]] = {}
    for board in load_dashboards():
        for variable in variable_queries(board):
            found = label_values(live.prometheus, variable.query)
            assert found, f"{board['uid']} ${variable.name}: {variable.query} lists nothing"
            listed[f"{board['uid']}.{variable.name}"] = found
    assert runs <= set(listed["raylift-training.run"])
    assert SWEEP in listed["raylift-tuning.sweep"]
    assert APP in listed["raylift-serving.application"]


def test_ctrl_c_stops_monitor_and_its_prometheus(live: Live) -> None:
    import psutil

    text = live.monitor_log.read_text()
    assert "via Ray's discovery file" in text  # the head's own file, read where it lies
    folder = next(line.split()[-1] for line in text.splitlines() if "data:" in line)
    assert Path(folder).is_dir()
    live.monitor.send_signal(signal.SIGINT)
    assert live.monitor.wait(timeout=30) == 0
    assert "Prometheus stopped" in live.monitor_log.read_text()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{live.prometheus}/-/ready", timeout=2)
    left = [
        p.pid
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "prometheus" and folder in " ".join(p.info["cmdline"] or [])
    ]
    assert left == [] and not Path(folder).exists()
