"""specs.load: one entry point for every YAML kind, with the same file:line:key errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from raylift.errors import SpecError
from raylift.specs import KINDS, JobSpec, ServeSpec, SweepSpec, kind_of, load

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("jobs/digits-mlp.yaml", JobSpec),
        ("jobs/tinygpt-lora.yaml", JobSpec),
        ("jobs/sweeps/digits-asha.yaml", SweepSpec),
        ("serve/digits.yaml", ServeSpec),
        ("serve/tinygpt.yaml", ServeSpec),
    ],
)
def test_load_dispatches_on_kind(path: str, model: type) -> None:
    spec = load(ROOT / path)
    assert type(spec) is model and KINDS[kind_of(ROOT / path)] is model


def test_every_shipped_spec_loads() -> None:
    files = [*ROOT.glob("jobs/**/*.yaml"), *ROOT.glob("serve/*.yaml")]
    assert len(files) >= 8
    for file in files:
        assert type(load(file)) in KINDS.values()


def test_a_file_without_kind_is_a_job_and_overrides_apply_first(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("name: j\nmodel: {name: mlp}\ndata: {name: digits}\n")
    assert isinstance(load(job), JobSpec)
    assert load(job, ["train.lr=0.5"]).train.lr == 0.5  # type: ignore[union-attr]
    with pytest.raises(SpecError) as info:
        load(job, ["kind=serve"])  # the override changes the kind, then the fields
    assert info.value.file == str(job)


def test_unknown_kind_names_file_line_key_and_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nkind: swep\n")
    with pytest.raises(SpecError) as info:
        load(bad)
    err = info.value
    assert (err.file, err.line, err.key) == (str(bad), 2, "kind")
    assert 'did you mean "sweep"' in str(err) and "train, sweep, serve" in str(err)


def test_errors_keep_the_dotted_key_for_every_kind() -> None:
    with pytest.raises(SpecError) as info:
        load(ROOT / "serve/digits.yaml", ["models.0.replicas=-1"])
    assert info.value.key is not None and info.value.key.startswith("models.0.replicas")
    with pytest.raises(SpecError) as info:
        load(ROOT / "jobs/sweeps/digits-asha.yaml", ["num_samples=0"])
    assert info.value.key == "num_samples" and info.value.line is not None
