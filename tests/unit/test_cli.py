"""CLI parsing and error reporting (click's CliRunner; nothing is started)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from raylift.cli.main import cli

DIGITS = str(Path(__file__).resolve().parents[2] / "jobs" / "digits-mlp.yaml")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_validate_ok() -> None:
    code, out, _ = run("validate", DIGITS)
    assert code == 0 and "ok" in out


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.lrr=1", 'train.lrr: unknown key (did you mean "lr"?)'),
        ("train.lr=0", "train.lr: Input should be greater than 0"),
        ("model.name=mpl", "model.name: unknown model 'mpl'"),
        ("scaling.min_workers=5", "scaling.min_workers:"),
    ],
)
def test_bad_spec_is_one_line_exit_2_no_traceback(override: str, expected: str) -> None:
    code, out, err = run("validate", DIGITS, "--set", override)
    assert code == 2
    assert expected in err and "digits-mlp.yaml" in err
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


def test_train_with_bad_spec_starts_nothing(tmp_path: Path) -> None:
    code, _, err = run("train", DIGITS, "--set", "data.name=nope")
    assert code == 2 and "data.name" in err
    assert not (tmp_path / "runs").exists()


def test_missing_file_exit_2() -> None:
    code, _, err = run("train", "no/such.yaml")
    assert code == 2 and "file not found" in err


def test_debug_shows_the_traceback() -> None:
    result = CliRunner().invoke(cli, ["--debug", "validate", DIGITS, "--set", "train.lr=0"])
    assert result.exit_code != 0 and result.exception is not None
    assert type(result.exception).__name__ == "SpecError"


def test_dry_run_prints_the_resolved_spec(tmp_path: Path) -> None:
    code, out, _ = run("train", DIGITS, "--set", "train.lr=0.5", "--dry-run")
    assert code == 0
    assert "lr: 0.5" in out and "name: digits-mlp" in out
    assert str(tmp_path / "runs") in out  # resolved storage path
    assert not (tmp_path / "runs").exists()


def test_runs_list_empty_and_show_unknown(tmp_path: Path) -> None:
    code, out, _ = run("runs", "list")
    assert code == 0 and "no runs" in out
    code, _, err = run("runs", "show", "ghost")
    assert code == 2 and "no run 'ghost'" in err


def test_usage_error_exit_code() -> None:
    code, _, _ = run("train")
    assert code == 2
