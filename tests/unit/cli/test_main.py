"""The root command: errors are one line, exit 2; ``--debug`` shows the traceback (CliRunner)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from raylift.cli.main import cli

DIGITS = str(Path(__file__).resolve().parents[3] / "jobs" / "digits-mlp.yaml")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


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


def test_debug_shows_the_traceback() -> None:
    result = CliRunner().invoke(cli, ["--debug", "validate", DIGITS, "--set", "train.lr=0"])
    assert result.exit_code != 0 and result.exception is not None
    assert type(result.exception).__name__ == "SpecError"


def test_usage_error_exit_code() -> None:
    code, _, _ = run("train")
    assert code == 2
