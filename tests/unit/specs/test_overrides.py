"""``--set dotted.key=value`` overrides: typed, and validated by the same model."""

from __future__ import annotations

from pathlib import Path

import pytest

from raylift.errors import SpecError
from raylift.specs import load_spec
from raylift.specs.overrides import parse_override
from raylift.testing.specs import MINIMAL_JOB as MINIMAL
from raylift.testing.specs import write


def test_set_overrides_are_typed_and_validated(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, MINIMAL), ["train.lr=0.05", "model.params.hidden_sizes=[8]"])
    assert spec.train.lr == pytest.approx(0.05)
    assert spec.model is not None and spec.model.params == {"hidden_sizes": [8]}
    assert parse_override("a.b=true") == (["a", "b"], True)
    with pytest.raises(SpecError, match=r"dotted\.key=value"):
        parse_override("novalue")
