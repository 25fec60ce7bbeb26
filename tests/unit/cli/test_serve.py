"""``raylift serve`` without a cluster: refusals naming the key, ``--emit-config``, int8 gate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from raylift.cli.main import cli
from raylift.testing.exports import gpt_spec, make_export

ROOT = Path(__file__).resolve().parents[3]


def test_cli_refuses_a_missing_export_naming_the_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "serve",
            str(ROOT / "serve" / "digits.yaml"),
            "--set",
            f"storage.path={tmp_path}",
            "--dry-run",
        ],
    )
    assert result.exit_code == 2
    assert "models.0.model.path" in result.output and "train it first" in result.output


def test_cli_emits_a_serve_config_and_refuses_detach_without_a_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = make_export(tmp_path / "gpt", gpt_spec(), steps=5)
    out = tmp_path / "config.yaml"
    args = ["serve", str(ROOT / "serve" / "tinygpt.yaml"), "--set", f"models.0.model.path={export}"]
    result = CliRunner().invoke(cli, [*args, "--emit-config", str(out)])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(out.read_text())
    assert config["applications"][0]["args"]["spec"]["models"][0]["model"]["path"] == str(export)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    result = CliRunner().invoke(cli, [*args, "--detach"])
    assert result.exit_code == 2 and "error: --detach: needs a running cluster" in result.output


def _int8_hostile(model: torch.nn.Module, data: object) -> None:
    """A huge weight on an always-blank pixel: the float outputs do not change, but int8's
    per-row scale becomes so coarse that the layer's other weights round to zero."""
    blank = int((data.train_inputs == data.train_inputs[0]).all(dim=0).nonzero()[0])  # type: ignore[attr-defined]
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        first.weight[:, blank] = 1e4


def test_cli_refuses_an_int8_model_that_loses_too_much_accuracy(tmp_path: Path) -> None:
    from raylift.testing.exports import digits_spec

    export = make_export(tmp_path / "digits", digits_spec(), steps=200, tamper=_int8_hostile)
    args = ["serve", str(ROOT / "serve" / "digits.yaml"), "--set", f"models.0.model.path={export}"]
    assert CliRunner().invoke(cli, [*args, "--dry-run"]).exit_code == 0  # fp32 is fine
    refused = CliRunner().invoke(cli, [*args, "--set", "models.0.quantize=int8", "--dry-run"])
    assert refused.exit_code == 2
    assert "model 'digits': int8 loses" in refused.output
    assert "more than max_accuracy_drop_pts 0.50" in refused.output
