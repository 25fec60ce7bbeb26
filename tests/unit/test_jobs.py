"""Token discovery and job submissions, without a cluster."""

from __future__ import annotations

import shlex
import stat
from pathlib import Path

import pytest

from raylift.errors import AuthError, SpecError, UsageError
from raylift.ops import auth
from raylift.ops.jobs import DEFAULT_EXCLUDES, build_submission, dashboard_address, exit_code

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv(auth.TOKEN_ENV, raising=False)
    monkeypatch.delenv(auth.TOKEN_PATH_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(auth.AUTH_MODE_ENV, "token")
    return tmp_path


def test_token_lookup_follows_rays_order(no_token: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert auth.find_token() is None
    with pytest.raises(AuthError, match="RAY_AUTH_TOKEN_PATH"):
        auth.require_token()
    home_file = no_token / ".ray" / "auth_token"
    home_file.parent.mkdir()
    home_file.write_text("from-home\n")
    assert auth.find_token() == auth.Token("from-home", str(home_file))
    named = no_token / "named"
    named.write_text("from-path")
    monkeypatch.setenv(auth.TOKEN_PATH_ENV, str(named))
    assert auth.find_token().value == "from-path"
    monkeypatch.setenv(auth.TOKEN_ENV, "from-env")
    token = auth.find_token()
    assert token.value == "from-env" and token.source == "$RAY_AUTH_TOKEN"
    monkeypatch.delenv(auth.TOKEN_ENV)
    monkeypatch.setenv(auth.TOKEN_PATH_ENV, str(no_token / "missing"))
    with pytest.raises(AuthError, match="does not exist"):
        auth.find_token()
    monkeypatch.setenv(auth.AUTH_MODE_ENV, "disabled")
    assert auth.require_token() is None and auth.auth_headers() == {}


def test_token_file_is_created_private_and_kept(no_token: Path) -> None:
    path = no_token / "cluster" / "token"
    auth.ensure_token_file(path)
    first = path.read_text()
    assert len(first) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)  # e.g. written by an older Ray
    auth.ensure_token_file(path)
    assert path.read_text() == first and stat.S_IMODE(path.stat().st_mode) == 0o600


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
