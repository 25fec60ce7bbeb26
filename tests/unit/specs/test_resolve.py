"""specs/resolve.py: the resolved job the workers get, and the one Objective."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from raylift.errors import SpecError
from raylift.specs import spec_from_dict
from raylift.specs.resolve import Objective, ResolvedJob, infer_mode, load_resolved, resolve

ROOT = Path(__file__).resolve().parents[3]


def _job(**train: object) -> dict[str, object]:
    return {
        "name": "resolve-test",
        "model": {"name": "mlp", "params": {"hidden_sizes": [16]}},
        "data": {"name": "digits"},
        "train": {"epochs": 1, **train},
    }


def test_objective_infers_the_mode_from_the_metric() -> None:
    assert infer_mode("val_accuracy") == "max" and infer_mode("val_token_accuracy") == "max"
    assert infer_mode("val_loss") == "min" and infer_mode("val_perplexity") == "min"
    assert Objective.of("val_accuracy") == Objective(metric="val_accuracy", mode="max")
    assert Objective.of("val_accuracy", "min").mode == "min"  # an explicit mode wins


def test_objective_for_a_task_and_its_comparisons() -> None:
    assert Objective.for_task("classification") == Objective.of("val_accuracy")
    assert Objective.for_task("language_modeling") == Objective.of("val_loss")
    with pytest.raises(SpecError, match="not reported for language_modeling") as info:
        Objective.for_task("language_modeling", "val_accuracy")
    assert info.value.key == "train.metric"
    high, low = Objective.of("val_accuracy"), Objective.of("val_loss")
    assert high.better(0.9, 0.8) and not high.better(0.8, 0.9) and high.better(0.1, None)
    assert low.better(0.8, 0.9) and not low.better(0.9, 0.8)
    assert high.best([0.5, float("nan"), 0.7]) == 0.7 and low.best([0.5, 0.7]) == 0.5
    assert low.best([]) is None
    assert sorted([0.2, 0.9, 0.5], key=low.score, reverse=True)[0] == 0.2
    assert str(high) == "max val_accuracy"


def test_resolve_fills_params_and_the_objective_and_pickles() -> None:
    job = resolve(spec_from_dict(_job()))
    assert isinstance(job, ResolvedJob)
    assert job.model.params["hidden_sizes"] == [16] and "dropout" in job.model.params
    assert job.train.metric is None  # the task decides, once the data is known
    with pytest.raises(SpecError, match="not resolved"):
        _ = job.objective
    job = job.for_task("classification")
    assert job.objective == Objective.of("val_accuracy")
    again = pickle.loads(pickle.dumps(job))  # what Ray does to hand it to the workers
    assert again == job and again.objective == job.objective
    assert load_resolved(job.as_json()) == job
    assert load_resolved(__import__("json").dumps(job.as_json())) == job


def test_resolve_keeps_an_explicit_metric_and_mode() -> None:
    job = resolve(spec_from_dict(_job(metric="val_loss"))).for_task("classification")
    assert job.objective == Objective(metric="val_loss", mode="min")
    job = resolve(spec_from_dict(_job(metric="val_accuracy", mode="min")))
    assert job.for_task("classification").objective.mode == "min"
    assert not job.elastic and not job.sharded


def test_resolve_takes_the_model_from_an_init_from_export(tmp_path: Path) -> None:
    from raylift.testing.exports import digits_spec, make_export

    export = make_export(tmp_path / "pretrained", digits_spec(hidden_sizes=[8]))
    spec = spec_from_dict(
        {"name": "continue", "init_from": str(export), "data": {"name": "digits"}}
    )
    assert spec.model is None
    job = resolve(spec)
    assert job.model.name == "mlp" and job.model.params["hidden_sizes"] == [8]
    assert job.init_from == str(export)


def test_relative_data_paths_are_made_absolute_for_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from raylift.specs import check_runnable, load_spec

    (tmp_path / "corpus.txt").write_text("hello world " * 100)
    monkeypatch.chdir(tmp_path)
    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        "name: t\nmodel: {name: gpt}\ndata: {name: text, params: {paths: [corpus.txt]}}\n"
    )
    spec = load_spec(job_file)
    check_runnable(spec)
    assert resolve(spec).data.params["paths"] == [str(tmp_path / "corpus.txt")]
