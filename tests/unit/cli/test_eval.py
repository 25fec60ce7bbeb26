"""``raylift eval``: an export's loss and perplexity on a data set's held-out split."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from raylift.cli.main import cli
from raylift.data.base import load_dataset
from raylift.models.base import build_model
from raylift.specs import spec_from_dict
from raylift.specs.resolve import resolve
from raylift.testing.specs import TINY_LLAMA
from raylift.training.exporting import write_model_export

TEXT = {"corpus": "licenses", "context_length": 32, "max_bytes": 40_000}


def _spec(data: dict[str, object], model: dict[str, object]) -> dict[str, object]:
    return {
        "name": "eval-me",
        "model": model,
        "data": {"name": "text", "params": data, "val_fraction": 0.2, "seed": 1},
        "train": {"max_steps": 1, "epochs": None},
    }


def _export(folder: Path, spec: dict[str, object]) -> tuple[Path, torch.nn.Module, object]:
    job = resolve(spec_from_dict(spec)).for_task("language_modeling")
    data = load_dataset("text", job.data.params, val_fraction=0.2, seed=1)
    torch.manual_seed(0)
    model = build_model(job.model.name, None, job.model.params, data.info).eval()
    write_model_export(str(folder), weights=model.state_dict(), job=job, data=data, metrics={})
    return folder, model, data


@pytest.fixture(scope="module")
def llama_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module, object]:
    spec = _spec(TEXT, {"name": "hf", "params": {"config": dict(TINY_LLAMA)}})
    return _export(tmp_path_factory.mktemp("eval") / "export", spec)


def _run(*args: str) -> tuple[int, str]:
    """Exit code and stdout (--json) or everything printed (errors go to stderr)."""
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout if "--json" in args else result.output


def test_eval_gives_the_loss_of_every_held_out_token(llama_export) -> None:
    export, model, data = llama_export
    code, output = _run("eval", str(export), "--json", "--batch-size", "7")
    assert code == 0, output
    result = json.loads(output)
    with torch.no_grad():
        logits = model(data.val_inputs)
    expected = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), data.val_targets.reshape(-1)
    )
    assert result["tokens"] == data.val_targets.numel()
    assert result["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]), rel=1e-6)
    assert result["unigram_loss"] == pytest.approx(data.baselines["unigram_loss"])
    code, text = _run("eval", str(export), "--split", "train", "--max-batches", "2")
    assert code == 0 and "train loss" in text and "on 1,024 tokens" in text  # 2 x 16 x 32


def test_eval_takes_the_data_of_another_spec(llama_export, tmp_path: Path) -> None:
    export, _, _ = llama_export
    other = _spec({"corpus": "python-docs", "context_length": 16, "max_bytes": 20_000}, {
        "name": "hf", "params": {"config": dict(TINY_LLAMA)}})  # fmt: skip
    spec_file = tmp_path / "other.yaml"
    spec_file.write_text(yaml.safe_dump(other))
    code, output = _run("eval", str(export), "--data", str(spec_file), "--json")
    assert code == 0, output
    result = json.loads(output)
    assert result["tokens"] == round(20_000 // 17 * 0.2) * 16

    longer = _spec({"corpus": "licenses", "context_length": 64}, other["model"])
    spec_file.write_text(yaml.safe_dump(longer))
    code, output = _run("eval", str(export), "--data", str(spec_file))
    assert code == 2 and "--data" in output and "64-token windows" in output


def test_eval_refuses_a_classifier_and_a_missing_export(tmp_path: Path) -> None:
    from raylift.data.digits import digits  # noqa: F401  (registers the data set)

    job = resolve(
        spec_from_dict(
            {
                "name": "digits",
                "model": {"name": "mlp"},
                "data": {"name": "digits"},
                "train": {"max_steps": 1, "epochs": None},
            }
        )
    ).for_task("classification")
    data = load_dataset("digits", job.data.params, val_fraction=0.2, seed=0)
    model = build_model("mlp", None, job.model.params, data.info)
    write_model_export(
        str(tmp_path / "mlp"), weights=model.state_dict(), job=job, data=data, metrics={}
    )
    code, output = _run("eval", str(tmp_path / "mlp"))
    assert code == 2 and "classification model" in output
    code, output = _run("eval", str(tmp_path / "nothing"))
    assert code != 0 and "no such export" in output
