"""Loading sweeps: every shipped sweep validates with a metric and a mode."""

from __future__ import annotations

from pathlib import Path

from raylift.tuning.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[3]
BASE = "name: base\nmodel: {name: mlp}\ndata: {name: digits}\ntrain:\n  epochs: 1\n"


def test_the_shipped_sweeps_validate() -> None:
    for path in sorted((ROOT / "jobs" / "sweeps").glob("*.yaml")):
        loaded = load_sweep(str(path))
        assert loaded.metric and loaded.mode in ("min", "max")


def test_a_sweep_over_val_accuracy_without_mode_maximises(tmp_path: Path) -> None:
    """The base job names train.metric val_accuracy, nobody names a mode: max, not min."""
    from click.testing import CliRunner

    from raylift.cli.main import cli

    (tmp_path / "base.yaml").write_text(BASE + "  metric: val_accuracy\n")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "kind: sweep\nname: no-mode\nbase: base.yaml\n"
        "space:\n  train.lr: {loguniform: [0.001, 0.1]}\n"
    )
    loaded = load_sweep(str(sweep))
    assert loaded.base.train.metric == "val_accuracy" and loaded.base.train.mode is None
    assert loaded.sweep.metric is None and loaded.sweep.mode is None
    assert (loaded.metric, loaded.mode) == ("val_accuracy", "max")
    result = CliRunner().invoke(cli, ["tune", str(sweep), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "max val_accuracy" in result.output and "min val_accuracy" not in result.output


def test_the_sweeps_own_metric_gets_its_own_mode(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(BASE + "  metric: val_accuracy\n  mode: max\n")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "kind: sweep\nname: loss\nbase: base.yaml\nmetric: val_loss\n"
        "space:\n  train.lr: {loguniform: [0.001, 0.1]}\n"
    )
    assert str(load_sweep(str(sweep)).objective) == "min val_loss"  # not the base's max
