"""Job specs: every shipped spec loads; each kind of bad spec names file, key and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from raylift.specs import JobSpec, dump_spec, load_spec
from raylift.testing.specs import MINIMAL_JOB as MINIMAL
from raylift.testing.specs import error_of, write

JOBS = sorted((Path(__file__).resolve().parents[3] / "jobs").glob("*.yaml"))
DIGITS = Path(__file__).resolve().parents[3] / "jobs" / "digits-mlp.yaml"


@pytest.mark.parametrize("path", JOBS, ids=[p.name for p in JOBS])
def test_every_shipped_job_spec_loads(path: Path) -> None:
    spec = load_spec(path)
    assert isinstance(spec, JobSpec)
    assert spec.name == path.stem


def test_shipped_specs_are_found() -> None:
    names = {p.name for p in JOBS}
    assert {
        "digits-mlp.yaml",
        "digits-cnn.yaml",
        "tinygpt-pretrain.yaml",
        "tinygpt-finetune.yaml",
        "tinygpt-lora.yaml",
    } <= names


def test_defaults_and_public_keys(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, MINIMAL))
    assert spec.train.lr > 0 and spec.train.epochs == 10
    assert spec.scaling.min_workers == spec.scaling.max_workers == 2
    assert spec.scaling.num_workers == 2
    assert spec.storage.path == str(tmp_path / "runs")  # RAYLIFT_STORAGE_PATH from conftest


def test_elastic_range_becomes_a_tuple(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, MINIMAL), ["scaling.min_workers=1", "scaling.max_workers=4"])
    assert spec.scaling.num_workers == (1, 4)


def test_dump_spec_round_trips(tmp_path: Path) -> None:
    spec = load_spec(DIGITS)
    again = load_spec(write(tmp_path, dump_spec(spec)))
    assert again == spec


def test_unknown_model_param_did_you_mean(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL, ["model.params.hiden_sizes=[4]"])
    assert err.key == "model.params.hiden_sizes"
    assert 'did you mean "hidden_sizes"' in str(err)


def test_unknown_model_lists_known(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL, ["model.name=resnet"])
    assert err.key == "model.name"
    assert "unknown model 'resnet'" in str(err) and "cnn, gpt, hf, mlp" in str(err)


def test_unknown_dataset_lists_known(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL, ["data.name=digts"])
    assert err.key == "data.name"
    assert 'did you mean "digits"' in str(err) and "text" in str(err)


def test_min_workers_above_max(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL, ["scaling.min_workers=3", "scaling.max_workers=2"])
    assert err.key == "scaling.min_workers"
    assert "min_workers <= max_workers" in str(err)


@pytest.mark.parametrize("lr", ["0", "-0.1"])
def test_non_positive_learning_rate(tmp_path: Path, lr: str) -> None:
    err = error_of(tmp_path, MINIMAL, [f"train.lr={lr}"])
    assert err.key == "train.lr" and "greater than 0" in str(err)


def test_bad_run_name(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL, ["name=../escape"])
    assert err.key == "name"


def test_unwritable_storage_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    err = error_of(tmp_path, MINIMAL, [f"storage.path={blocker}/runs"])
    assert err.key == "storage.path" and "not writable" in str(err)


def test_init_from_that_does_not_exist(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: t\ndata: {name: digits}\ninit_from: no-such-run\n")
    assert err.key == "init_from" and "not an exported model" in str(err)


def test_model_or_init_from_required(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: t\ndata: {name: digits}\n")
    assert "init_from" in str(err)


def test_init_from_run_name_resolves_under_storage(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, "name: t\ndata: {name: digits}\ninit_from: pre\n"))
    assert spec.init_from_path == str(tmp_path / "runs" / "pre" / "model")


def test_unknown_metric_did_you_mean(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL, ["train.metric=val_acc"])
    assert err.key == "train.metric" and 'did you mean "val_accuracy"' in str(err)


def test_missing_data_files_are_caught_before_starting(tmp_path: Path) -> None:
    text = "name: t\nmodel: {name: gpt}\ndata: {name: text, params: {paths: [nowhere/*.txt]}}\n"
    err = error_of(tmp_path, text)
    assert err.key == "data.params" and "matches no files" in str(err)


GPT_MINIMAL = """\
name: t
model: {name: gpt}
data: {name: text}
"""


def test_finetune_is_optional_and_lora_has_defaults(tmp_path: Path) -> None:
    assert load_spec(write(tmp_path, GPT_MINIMAL)).finetune is None
    spec = load_spec(write(tmp_path, GPT_MINIMAL + "finetune: {lora: {}}\n"))
    assert spec.finetune is not None and spec.finetune.lora is not None
    lora = spec.finetune.lora
    assert (lora.rank, lora.alpha, lora.dropout) == (8, 16.0, 0.0)
    assert lora.targets == ["*.attn.qkv", "*.attn.proj", "*.mlp.fc", "*.mlp.proj"]
    spec = load_spec(write(tmp_path, GPT_MINIMAL), ["finetune.freeze=[tok_emb.*]"])
    assert spec.finetune is not None and spec.finetune.freeze == ["tok_emb.*"]


@pytest.mark.parametrize(
    ("override", "key", "text"),
    [
        ("finetune.lora.rank=0", "finetune.lora.rank", "greater than 0"),
        ("finetune.lora.alpha=-1", "finetune.lora.alpha", "greater than 0"),
        ("finetune.lora.dropout=1", "finetune.lora.dropout", "less than 1"),
        ("finetune.lora.targets=[]", "finetune.lora.targets", "at least 1"),
        ("finetune.lora.rnk=4", "finetune.lora.rnk", 'did you mean "rank"'),
        ("finetune.freez=[a]", "finetune.freez", 'did you mean "freeze"'),
        ("finetune={}", "finetune", "set finetune.freeze"),
    ],
)
def test_bad_finetune_names_the_key(tmp_path: Path, override: str, key: str, text: str) -> None:
    err = error_of(tmp_path, GPT_MINIMAL, [override])
    assert err.key == key and text in str(err)


def test_freeze_with_lora_is_refused(tmp_path: Path) -> None:
    err = error_of(tmp_path, GPT_MINIMAL + "finetune: {freeze: [tok_emb.*], lora: {rank: 4}}\n")
    assert err.key == "finetune.freeze" and "finetune.lora.targets" in str(err)


@pytest.mark.parametrize(
    ("sets", "key", "text"),
    [
        (["train.global_batch_size=64", "train.global_batch_tokens=4096"],
         "train.global_batch_tokens", "not both"),
        (["train.global_batch_size=64", "train.grad_accum_steps=2"],
         "train.grad_accum_steps", "leave it at 1"),
        (["train.global_batch_size=64", "scaling.batch_policy=keep_per_worker"],
         None, "keep_global"),
    ],
)  # fmt: skip
def test_global_batch_conflicts_name_the_key(
    tmp_path: Path, sets: list[str], key: str | None, text: str
) -> None:
    err = error_of(tmp_path, MINIMAL, sets)
    assert text in str(err)
    if key is not None:
        assert err.key == key
