"""``raylift validate`` and ``raylift train``: a bad spec starts nothing (CliRunner)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from raylift.cli.main import cli

DIGITS = str(Path(__file__).resolve().parents[3] / "jobs" / "digits-mlp.yaml")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_validate_ok() -> None:
    code, out, _ = run("validate", DIGITS)
    assert code == 0 and "ok" in out


def test_train_with_bad_spec_starts_nothing(tmp_path: Path) -> None:
    code, _, err = run("train", DIGITS, "--set", "data.name=nope")
    assert code == 2 and "data.name" in err
    assert not (tmp_path / "runs").exists()


def test_missing_file_exit_2() -> None:
    code, _, err = run("train", "no/such.yaml")
    assert code == 2 and "file not found" in err


def test_dry_run_prints_the_resolved_spec(tmp_path: Path) -> None:
    code, out, _ = run("train", DIGITS, "--set", "train.lr=0.5", "--dry-run")
    assert code == 0
    assert "lr: 0.5" in out and "name: digits-mlp" in out
    assert str(tmp_path / "runs") in out  # resolved storage path
    assert not (tmp_path / "runs").exists()


def test_validate_takes_every_shipped_spec_of_every_kind_at_once() -> None:
    root = Path(DIGITS).parents[1]
    files = sorted(
        str(p)
        for pattern in ("jobs/*.yaml", "jobs/sweeps/*.yaml", "serve/*.yaml")
        for p in root.glob(pattern)
    )
    code, out, err = run("validate", *files)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == len(files) and all(": ok (" in line for line in lines)
    assert any("(sweep 'digits-asha'" in line and "max val_accuracy" in line for line in lines)
    assert any("(serve application 'digits'" in line for line in lines)
    # A fine-tuning job whose pretrained export does not exist yet: valid, with a note.
    assert any("tinygpt-lora" in line and "note: " in line for line in lines)


def test_validate_stops_at_the_first_bad_file_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: sweeep\nname: x\n")
    code, out, err = run("validate", DIGITS, str(bad))
    assert code == 2 and ": ok (job 'digits-mlp')" in out
    assert f"{bad}:1:1: kind: unknown kind 'sweeep'" in err and 'did you mean "sweep"' in err
