"""Reading a spec file: missing files, YAML errors and unknown keys name the file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from raylift.errors import SpecError
from raylift.specs import load_spec
from raylift.testing.specs import MINIMAL_JOB as MINIMAL
from raylift.testing.specs import error_of


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="file not found") as info:
        load_spec(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(info.value)


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: t\nmodel: {name: mlp\ndata: {name: digits}\n")
    assert err.line is not None and err.column is not None
    assert "YAML syntax error" in str(err) and "job.yaml:" in str(err)


def test_unknown_key_did_you_mean(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL + "train:\n  lrr: 0.1\n")
    assert err.key == "train.lrr"
    assert 'did you mean "lr"' in str(err)
    assert err.line == 5


def test_unknown_top_level_key_lists_nothing_wrong(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL + "scalling: {}\n")
    assert err.key == "scalling" and 'did you mean "scaling"' in str(err)


def test_missing_required_key(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: t\nmodel: {name: mlp}\n")
    assert err.key == "data" and "missing" in str(err)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    err = error_of(tmp_path, "- a\n- b\n")
    assert "mapping" in str(err)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: !!python/object/apply:os.system ['echo hi']\n")
    assert "YAML" in str(err)
