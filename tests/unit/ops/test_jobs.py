"""Job submissions, without a cluster."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from raylift.errors import SpecError, UsageError
from raylift.ops.jobs import DEFAULT_EXCLUDES, build_submission, dashboard_address, exit_code

ROOT = Path(__file__).resolve().parents[3]


def test_submission_ships_the_working_dir_and_runs_raylift_train(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    submission = build_submission(
        "jobs/digits-mlp.yaml", ["train.epochs=2", "name=digits-x"], resume=True, excludes=["*.md"]
    )
    assert shlex.split(submission.entrypoint) == [
        "raylift", "train", "jobs/digits-mlp.yaml", "--set=train.epochs=2", "--set=name=digits-x",
        "--resume",
    ]  # fmt: skip
    env = submission.runtime_env
    assert env["working_dir"] == str(ROOT)
    assert env["excludes"] == [*DEFAULT_EXCLUDES, "*.md"]
    assert int(env["env_vars"]["RAY_JOB_STOP_WAIT_TIME_S"]) >= 30
    assert submission.metadata["raylift_run"] == "digits-x"
    assert submission.submission_id.startswith("raylift-digits-x-")
    assert 0 < submission.package_bytes < 20 * 2**20  # .venv and .git are left out


def test_submission_refuses_bad_input_before_sending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    with pytest.raises(UsageError, match="outside the working directory"):
        build_submission(str(ROOT / "jobs" / "digits-mlp.yaml"), [], working_dir=str(tmp_path))
    with pytest.raises(SpecError, match=r"train\.lr"):
        build_submission(str(ROOT / "jobs" / "digits-mlp.yaml"), ["train.lr=-1"])


def test_addresses_and_exit_codes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAYLIFT_HOME", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    with pytest.raises(UsageError, match="RAY_ADDRESS"):
        dashboard_address(None)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:8265")
    assert dashboard_address(None) == "http://10.0.0.5:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://10.0.0.6:8265")
    assert dashboard_address(None) == "http://10.0.0.6:8265"  # Ray's job CLI order
    assert dashboard_address("https://ray.example.com/") == "https://ray.example.com"
    with pytest.raises(UsageError, match="dashboard address"):
        dashboard_address("ray://head:10001")
    assert [exit_code(s) for s in ("SUCCEEDED", "FAILED", "STOPPED", "RUNNING")] == [0, 1, 3, 0]


def test_a_sweep_spec_is_submitted_as_raylift_tune(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    submission = build_submission("jobs/sweeps/digits-asha.yaml", ["num_samples=2"], resume=True)
    assert shlex.split(submission.entrypoint) == [
        "raylift", "tune", "jobs/sweeps/digits-asha.yaml", "--set=num_samples=2", "--resume",
    ]  # fmt: skip
    assert submission.metadata["raylift_kind"] == "sweep"
    assert submission.submission_id.startswith("raylift-digits-asha-")
