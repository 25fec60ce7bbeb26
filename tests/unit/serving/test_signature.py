"""serving/signature.py: metadata from the export's manifest, with the run's objective."""

from __future__ import annotations

from pathlib import Path

from raylift.artifacts.export import read_manifest
from raylift.serving.signature import model_metadata, objective_of, signature_of
from raylift.testing.exports import digits_spec, gpt_spec, make_export


def test_metadata_reports_the_objective_the_export_was_chosen_by(tmp_path: Path) -> None:
    spec = digits_spec()
    spec["train"] = {**spec["train"], "metric": "val_accuracy"}
    manifest = read_manifest(str(make_export(tmp_path / "digits", spec, steps=20)))
    assert manifest["objective"] == {"metric": "val_accuracy", "mode": "max"}
    meta = model_metadata("digits", "1", manifest, quantized=False)
    objective = meta["parameters"]["objective"]
    assert objective["mode"] == "max" and objective["value"] == manifest["metrics"]["val_accuracy"]
    assert signature_of(manifest).inputs[0].name == "input"


def test_an_export_without_an_objective_falls_back_to_its_spec(tmp_path: Path) -> None:
    manifest = read_manifest(str(make_export(tmp_path / "gpt", gpt_spec(), steps=2)))
    older = {k: v for k, v in manifest.items() if k != "objective"}
    assert objective_of(older) == {"metric": "val_loss", "mode": "min", "value": None}
    older["spec"] = {**older["spec"], "train": {**older["spec"]["train"], "metric": None}}
    assert objective_of(older) is None
