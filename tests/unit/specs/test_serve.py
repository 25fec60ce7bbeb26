"""Deployment specs (kind: serve): the shipped ones load; bad ones name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from raylift.errors import SpecError
from raylift.specs.serve import Autoscaling, load_serve_spec

SERVE = sorted((Path(__file__).resolve().parents[3] / "serve").glob("*.yaml"))

MINIMAL = """\
kind: serve
name: app
models:
  - name: digits
    model: {path: digits-mlp}
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("path", SERVE, ids=[p.name for p in SERVE])
def test_every_shipped_serve_spec_loads(path: Path) -> None:
    spec = load_serve_spec(str(path))
    assert spec.host == "127.0.0.1" and spec.models


def test_shipped_specs_serve_the_shipped_jobs_exports(tmp_path: Path) -> None:
    names = {p.stem for p in SERVE}
    assert {"digits", "tinygpt"} <= names
    digits = load_serve_spec(str(SERVE[[p.stem for p in SERVE].index("digits")]))
    assert isinstance(digits.models[0].replicas, Autoscaling)
    root = digits.storage.path
    assert digits.model_path(digits.models[0]) == f"{root}/digits-mlp/model"


def test_defaults_and_overrides(tmp_path: Path) -> None:
    spec = load_serve_spec(
        write(tmp_path, MINIMAL),
        ["port=8123", "models.0.quantize=int8", "models.0.replicas=3"],
    )
    entry = spec.models[0]
    assert (spec.host, spec.port, spec.route_prefix) == ("127.0.0.1", 8123, "/")
    assert (entry.version, entry.quantize, entry.replicas) == ("1", "int8", 3)
    assert entry.batching.enabled and entry.max_accuracy_drop_pts == 0.5
    assert not spec.auth.enabled


def test_model_path_is_an_export_a_run_or_a_sweeps_best(tmp_path: Path) -> None:
    storage = tmp_path / "runs"
    (storage / "sweep-a" / "best" / "model").mkdir(parents=True)
    export = tmp_path / "somewhere" / "model"
    export.mkdir(parents=True)
    text = MINIMAL.replace("digits-mlp", "{ref}") + f"storage: {{path: {storage}}}\n"
    for ref, expected in [
        ("digits-mlp", f"{storage}/digits-mlp/model"),
        ("sweep-a", f"{storage}/sweep-a/best/model"),
        (str(export), str(export)),
    ]:
        spec = load_serve_spec(write(tmp_path, text.replace("{ref}", ref)))
        assert spec.model_path(spec.models[0]) == expected


@pytest.mark.parametrize(
    ("extra", "key", "message"),
    [
        ("    replicas: {min: 3, max: 2}\n", "models.0.replicas", "min (3) must be <= max (2)"),
        ("    replicas: 0\n", "models.0.replicas", ">= 1"),
        ("    quantize: int4\n", "models.0.quantize", "'none' or 'int8'"),
        ("    version: 'a b'\n", "models.0.version", "pattern"),
        (
            "    batching: {max_batch_size: 0}\n",
            "models.0.batching.max_batch_size",
            "greater than or equal to 1",
        ),
        ("    api_key: secret\n", "models.0.api_key", "unknown key"),
        ("    batchng: {}\n", "models.0.batchng", 'did you mean "batching"'),
    ],
)
def test_bad_model_entries_name_the_key(tmp_path: Path, extra: str, key: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_serve_spec(write(tmp_path, MINIMAL + extra))
    assert caught.value.key == key and message in str(caught.value)
    assert "serve.yaml" in str(caught.value)


def test_bad_application_settings(tmp_path: Path) -> None:
    cases = [
        ("route_prefix: api/\n", "route_prefix", "must start with '/'"),
        ("port: 70000\n", "port", "65535"),
        ("models: []\n", "models", "at least 1"),
    ]
    for extra, key, message in cases:
        text = MINIMAL if not extra.startswith("models") else "kind: serve\nname: app\n"
        with pytest.raises(SpecError) as caught:
            load_serve_spec(write(tmp_path, text + extra))
        assert caught.value.key == key and message in str(caught.value), str(caught.value)


def test_a_model_version_listed_twice_is_refused(tmp_path: Path) -> None:
    text = MINIMAL + "  - name: digits\n    model: {path: other}\n"
    with pytest.raises(SpecError, match="listed twice"):
        load_serve_spec(write(tmp_path, text))
    ok = text.replace("model: {path: other}", "model: {path: other}\n    version: '2'")
    assert [m.version for m in load_serve_spec(write(tmp_path, ok)).models] == ["1", "2"]


def test_set_indexes_the_models_list(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"models is a list of 1; use an index from 0 to 0"):
        load_serve_spec(write(tmp_path, MINIMAL), ["models.3.quantize=int8"])
