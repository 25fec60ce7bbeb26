"""A real dev cluster (`ray start` head + worker node, token auth) and the Jobs CLI against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raylift.models.exported import load_export
from raylift.ops import devcluster
from raylift.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
RAYLIFT = str(Path(sys.executable).parent / "raylift")

pytestmark = pytest.mark.slow


class Dev:
    """The module's cluster and the environment its clients use."""

    def __init__(self, cluster: devcluster.DevCluster, env: dict[str, str], storage: Path) -> None:
        self.cluster, self.env, self.storage = cluster, env, storage

    @property
    def url(self) -> str:
        return self.cluster.dashboard_url

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path = ROOT
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RAYLIFT, *args],
            cwd=cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def job_count(self) -> int:
        listed = self.cli("jobs", "list", "--address", self.url)
        assert listed.returncode == 0, listed.stderr
        return listed.stdout.count("raylift-")


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    base = tmp_path_factory.mktemp("devcluster")
    storage = base / "storage"
    env = {
        "RAYLIFT_HOME": str(base / "home"),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(base / "auth_token"),
        "RAYLIFT_STORAGE_PATH": str(storage),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.delenv("RAY_AUTH_TOKEN", raising=False)
        # Up through the CLI, as a user does it; the last test takes it down the same way.
        up = subprocess.run(
            [RAYLIFT, "cluster", "up", "--name", "jobs-test", "--workers", "1",
             "--cpus-per-worker", "2", "--port", "0", "--dashboard-port", "0",
             "--storage", str(storage)],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert up.returncode == 0, up.stderr[-3000:]
        cluster = devcluster.load("jobs-test")
        assert cluster is not None
        try:
            yield Dev(cluster, {**os.environ}, storage)
        finally:
            devcluster.down("jobs-test", quiet=True)


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _running(pid: int) -> bool:
    """Alive and not a zombie (killed processes whose parent has not reaped them)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_token_file_is_private_and_nodes_joined(dev: Dev) -> None:
    token = Path(dev.env["RAY_AUTH_TOKEN_PATH"])
    assert token.stat().st_mode & 0o777 == 0o600
    nodes = devcluster.nodes(dev.cluster)
    assert sorted(n["is_head"] for n in nodes if n["state"] == "ALIVE") == [False, True]
    worker = next(n for n in nodes if not n["is_head"])
    assert worker["resources"]["CPU"] == 2
    # Everything the cluster runs listens on loopback only.
    import psutil

    pids = {p.pid for p in devcluster.cluster_processes(dev.cluster)}
    listening = [
        (c.pid, c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    ]
    loopback = ("127.0.0.1", "::1", "::ffff:127.0.0.1")  # the last: IPv4 on an IPv6 socket
    assert listening and all(ip in loopback for _, ip, _ in listening), listening
    shown = dev.cli("cluster", "status", "--name", "jobs-test")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("ALIVE") == 2 and "CPU=2" in shown.stdout


def test_submit_a_sweep_runs_it_on_the_cluster_and_exports_the_winner(dev: Dev) -> None:
    done = dev.cli(
        "submit",
        "jobs/sweeps/digits-asha.yaml",
        "--address",
        dev.url,
        *("--set", "num_samples=2", "--set", "max_concurrent=2", "--set", "scheduler.type=fifo"),
        *("--set", "trial.train.epochs=1", "--set", "trial.train.checkpoint_every_epochs=1"),
        "--follow",
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    job_id = done.stdout.splitlines()[0].strip()
    assert job_id.startswith("raylift-digits-asha-")
    # --follow streams the driver's output, then the job's end state.
    assert "leaderboard" in done.stdout and "SUCCEEDED" in done.stderr
    sweep_dir = dev.storage / "digits-asha"  # the cluster's storage: `cluster up --storage`
    summary = json.loads((sweep_dir / "sweep.json").read_text())
    assert [t["status"] for t in summary["trials"]] == ["done", "done"]
    exported = load_export(str(sweep_dir / "best" / "model"))
    assert exported.metrics["val_accuracy"] == summary["best"]["best"]

    status = dev.cli("jobs", "status", job_id, "--address", dev.url)
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout
    logs = dev.cli("jobs", "logs", job_id, "--address", dev.url)
    assert logs.returncode == 0 and "best model:" in logs.stdout
    waited = dev.cli("jobs", "wait", job_id, "--address", dev.url)
    assert waited.returncode == 0


def test_stop_checkpoints_then_the_job_is_stopped(dev: Dev) -> None:
    submitted = dev.cli(
        "submit",
        "jobs/digits-mlp.yaml",
        "--address",
        dev.url,
        "--set",
        "name=digits-stop",
        "--set",
        "train.epochs=300",
        "--set",
        "train.log_every_steps=5",
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    record_path = dev.storage / "digits-stop" / "raylift-run.json"

    def training() -> bool:
        if not record_path.exists():
            return False
        return json.loads(record_path.read_text()).get("metrics", {}).get("step", 0) >= 5

    _wait_for(training, 180, "the submitted run to train")
    stopped = dev.cli("jobs", "stop", job_id, "--address", dev.url)
    assert stopped.returncode == 0, stopped.stderr
    assert "STOPPED" in stopped.stdout and "stopped at step" in stopped.stdout

    waited = dev.cli("jobs", "wait", job_id, "--address", dev.url)
    assert waited.returncode == 3  # scripts can tell a stopped job from a failed one
    record = json.loads(record_path.read_text())
    assert record["status"] == "stopped"
    step = record["metrics"]["step"]
    checkpoints = sorted((dev.storage / "digits-stop").glob("checkpoint_*"))
    assert any(f"{step:08d}" in c.name or c.name.endswith(str(step)) for c in checkpoints), (
        step,
        [c.name for c in checkpoints],
    )
    assert record["metrics"].get("checkpoint_reason") == "stop"


def test_a_wrong_or_missing_token_is_refused_in_one_line(dev: Dev) -> None:
    wrong = dev.cli("jobs", "list", "--address", dev.url, env={"RAY_AUTH_TOKEN": "not-the-token"})
    assert wrong.returncode == 4
    assert "refused" in wrong.stderr and "Traceback" not in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
    missing = dev.cli(
        "jobs",
        "list",
        "--address",
        dev.url,
        env={"RAY_AUTH_TOKEN_PATH": str(ROOT / "no-such-token")},
    )
    assert missing.returncode == 4 and "no-such-token" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_bad_input_fails_fast_and_sends_nothing(dev: Dev, tmp_path: Path) -> None:
    before = dev.job_count()
    closed = free_port()
    began = time.monotonic()
    unreachable = dev.cli("jobs", "list", "--address", f"http://127.0.0.1:{closed}")
    assert unreachable.returncode == 4 and "cannot reach" in unreachable.stderr
    assert time.monotonic() - began < 15

    unknown = dev.cli("jobs", "status", "raylift-no-such-job", "--address", dev.url)
    assert unknown.returncode == 2 and "raylift-no-such-job" in unknown.stderr

    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "jobs" / "digits-mlp.yaml").read_text().replace("lr: 0.003", "lr: -1"))
    invalid = dev.cli("submit", str(bad), "--address", dev.url, cwd=tmp_path)
    assert invalid.returncode == 2 and "train.lr" in invalid.stderr

    big = tmp_path / "big"
    big.mkdir()
    (big / "job.yaml").write_text((ROOT / "jobs" / "digits-mlp.yaml").read_text())
    (big / "weights.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    too_big = dev.cli(
        "submit",
        "job.yaml",
        "--address",
        dev.url,
        cwd=big,
        env={"RAYLIFT_MAX_WORKING_DIR_MIB": "1"},
    )
    assert too_big.returncode == 2 and "weights.bin" in too_big.stderr
    assert "Traceback" not in too_big.stderr
    assert dev.job_count() == before


def test_cluster_down_leaves_no_stray_processes_and_nothing_else(dev: Dev) -> None:
    """Last in this module: it stops the module's cluster."""
    started = {p.pid for p in devcluster.cluster_processes(dev.cluster)}
    assert len(started) >= 6  # two raylets, GCS, dashboard, agents, ray start...
    bystander = subprocess.Popen(["sleep", "60"])  # some other process on the machine
    try:
        down = dev.cli("cluster", "down", "--name", "jobs-test")
        assert down.returncode == 0, down.stderr
        assert devcluster.cluster_processes(dev.cluster) == []
        assert not [pid for pid in started if _running(pid)]
        assert not Path(dev.cluster.temp_dir).exists()
        assert bystander.poll() is None  # not ours: left alone
        again = dev.cli("cluster", "status", "--name", "jobs-test")
        assert again.returncode == 4 and "not running" in again.stderr
    finally:
        bystander.kill()
