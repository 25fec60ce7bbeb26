"""``raylift runs``: listing and showing runs (CliRunner; nothing is started)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from raylift.cli.main import cli


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_runs_list_empty_and_show_unknown(tmp_path: Path) -> None:
    code, out, _ = run("runs", "list")
    assert code == 0 and "no runs" in out
    code, _, err = run("runs", "show", "ghost")
    assert code == 2 and "no run 'ghost'" in err
