"""docs/spec-reference.md is generated from the spec models and must match them.

Imports only raylift.specs (and, through it, pydantic and the model/data
registries); starts no Ray.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from raylift.specs import reference

REFERENCE = Path(__file__).resolve().parents[3] / "docs" / "spec-reference.md"
STALE = (
    "docs/spec-reference.md differs from the spec models: run `make docs` "
    "(python -m raylift.specs.reference) and commit the result"
)


@pytest.fixture(scope="module")
def rendered() -> str:
    return reference.render()


def test_committed_reference_is_current(rendered: str) -> None:
    assert REFERENCE.is_file(), f"docs/spec-reference.md is missing: {STALE}"
    assert REFERENCE.read_text(encoding="utf-8") == rendered, STALE


def test_render_is_deterministic(rendered: str) -> None:
    assert reference.render() == rendered


@pytest.mark.parametrize(
    "key",
    [
        "`train.lr`",  # a job key
        "`finetune.lora.targets`",  # nested optional sections
        "`space.<key>.loguniform`",  # a sweep's map of distributions
        "`scheduler.max_t`",
        "`models.N.replicas.min`",  # a list of models, a union with a section
        "`models.N.limits.max_body_bytes`",
        "`model.params.hidden_sizes`",  # registry params
        "`data.params.context_length`",
    ],
)
def test_every_kind_and_nested_key_is_listed(rendered: str, key: str) -> None:
    assert f"| {key} |" in rendered


def test_defaults_do_not_depend_on_the_machine(
    rendered: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAYLIFT_STORAGE_PATH", "/somewhere/else")
    assert reference.render() == rendered
    assert "/somewhere/else" not in rendered


def test_check_fails_on_a_stale_file_and_passes_on_a_fresh_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "spec-reference.md"
    assert reference.main(["--check", "--out", str(out)]) == 1
    assert "make docs" in capsys.readouterr().err
    assert reference.main(["--out", str(out)]) == 0
    assert reference.main(["--check", "--out", str(out)]) == 0
    out.write_text(out.read_text() + "edited by hand\n")
    assert reference.main(["--check", "--out", str(out)]) == 1
