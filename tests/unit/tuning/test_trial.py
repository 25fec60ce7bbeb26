"""A trial: the base job spec with the values sampled from the space."""

from __future__ import annotations

from pathlib import Path

from raylift.testing.specs import write_sweep
from raylift.tuning.space import overrides_for, tune_space
from raylift.tuning.sweep import load_sweep
from raylift.tuning.trial import trial_spec_data


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
