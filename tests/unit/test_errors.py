"""errors.py: one hierarchy, exit codes scripts rely on, messages that name what is wrong."""

from __future__ import annotations

import pytest

from raylift import errors


def test_exit_codes() -> None:
    assert errors.RayliftError("x").exit_code == 1
    assert errors.SpecError("x").exit_code == 2
    assert errors.UsageError("x").exit_code == 2
    assert errors.UnknownJobError("x").exit_code == 2
    assert errors.JobStopped("x").exit_code == 3
    assert errors.ClusterError("x").exit_code == 4 and errors.AuthError("x").exit_code == 4


def test_a_usage_error_names_the_option_not_a_spec_file() -> None:
    err = errors.UsageError("write MIN:MAX", option="--cpu-workers")
    assert str(err) == "--cpu-workers: write MIN:MAX"
    assert not isinstance(err, errors.SpecError)
    assert str(errors.UsageError("no address")) == "no address"


def test_a_spec_error_names_file_line_and_key() -> None:
    err = errors.SpecError("bad", file="job.yaml", key="train.lr", line=3, column=5)
    assert str(err) == "job.yaml:3:5: train.lr: bad"
    assert str(errors.SpecError("bad").with_file("a.yaml")) == "a.yaml: bad"


def test_a_request_error_is_a_4xx_with_a_json_body() -> None:
    err = errors.RequestError("unknown model 'x'", status=404)
    assert isinstance(err, errors.RayliftError)
    assert err.status == 404 and err.body() == {"error": "unknown model 'x'"}
    assert errors.RequestError("bad").status == 400


@pytest.mark.parametrize("name", [n for n in dir(errors) if n.endswith("Error")])
def test_every_error_is_a_raylift_error(name: str) -> None:
    assert issubclass(getattr(errors, name), errors.RayliftError)
