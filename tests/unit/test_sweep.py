"""Sweep specs: the search space is checked against the base job spec before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from raylift.errors import SpecError
from raylift.tuning.space import overrides_for, tune_space
from raylift.tuning.sweep import load_sweep
from raylift.tuning.trial import trial_spec_data

ROOT = Path(__file__).resolve().parents[2]
BASE = str(ROOT / "jobs" / "digits-mlp.yaml")


def write_sweep(tmp_path: Path, **changes: object) -> str:
    data: dict[str, object] = {
        "kind": "sweep",
        "name": "s",
        "base": BASE,
        "space": {"train.lr": {"loguniform": [0.001, 0.01]}},
        "trial": {"scaling.min_workers": 1, "scaling.max_workers": 1},
    }
    data.update(changes)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"train.lrr": {"uniform": [0.1, 0.2]}}, "no key 'train.lrr'.*did you mean \"lr\""),
        ({"train.lr": {"uniform": [0.2, 0.1]}}, r"low \(0.2\) must be < high \(0.1\)"),
        ({"train.lr": {"loguniform": [0, 0.1]}}, r"low \(0.0\) must be > 0"),
        ({"data.batch_size": {"choice": []}}, "choice needs at least one value"),
        ({"train.optimizer": {"uniform": [0.0, 1.0]}}, "needs a numeric field.*'adamw'"),
        ({"train.lr": {"uniform": [0.1, 0.2], "choice": [1]}}, "exactly one distribution"),
        ({"train.lr": {"uniform": [-1.0, 0.2]}}, r"-1.0 makes the base spec invalid"),
        ({"train.optimizer": {"choice": ["adamw", "lion"]}}, "'lion' makes the base spec invalid"),
    ],
)
def test_bad_spaces_are_refused_with_the_key(
    tmp_path: Path, space: dict[str, object], message: str
) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        load_sweep(write_sweep(tmp_path, space=space))
    assert caught.value.key and caught.value.key.startswith("space.")
    assert caught.value.file and caught.value.file.endswith("sweep.yaml")


def test_schedulers_and_searchers_refuse_what_they_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="pbt can only change train"):
        load_sweep(
            write_sweep(
                tmp_path,
                space={"model.params.dropout": {"uniform": [0.0, 0.2]}},
                scheduler={"type": "pbt", "mutations": ["model.params.dropout"]},
            )
        )
    with pytest.raises(SpecError, match="grid needs grid values"):
        load_sweep(write_sweep(tmp_path, search={"type": "grid"}))
    with pytest.raises(SpecError, match="trial: min_workers"):
        load_sweep(write_sweep(tmp_path, trial={"scaling.max_workers": 1}))


def test_a_trial_is_the_base_spec_with_the_sampled_values(tmp_path: Path) -> None:
    loaded = load_sweep(
        write_sweep(tmp_path, space={"train.lr": {"loguniform": [0.001, 0.01]},
                                     "model.params.hidden_sizes": {"choice": [[64], [32, 16]]}})
    )  # fmt: skip
    assert set(tune_space(loaded.sweep)) == {"train.lr", "model.params.hidden_sizes"}
    config = {"train.lr": 0.005, "model.params.hidden_sizes": [32, 16], "unrelated": 1}
    assert ("train", "lr") in {tuple(p) for p, _ in overrides_for(config, loaded.sweep)}
    data = trial_spec_data(config, loaded.sweep, loaded.base.model_dump(mode="json"), "ab_00001")
    assert data["train"]["lr"] == 0.005 and data["model"]["params"]["hidden_sizes"] == [32, 16]
    assert data["scaling"]["max_workers"] == 1 and data["name"] == "trial-ab_00001"
    assert data["storage"]["path"] == loaded.sweep.sweep_dir + "/trials"


def test_the_shipped_sweeps_validate() -> None:
    for path in sorted((ROOT / "jobs" / "sweeps").glob("*.yaml")):
        loaded = load_sweep(str(path))
        assert loaded.metric and loaded.mode in ("min", "max")
