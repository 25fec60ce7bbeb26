"""Serving pieces that need no Ray: sampling options, stop strings, API keys, Serve config, CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from exports import gpt_spec, make_export
from raylift.cli.main import cli
from raylift.errors import RequestError, SpecError
from raylift.models.exported import load_export
from raylift.serving.app import deployment_options, serve_config
from raylift.serving.generate import Completion, _StopFilter, sampling_from, stream_completion
from raylift.serving.keys import KeyCheck, read_api_keys
from raylift.specs.serve import Auth, ServeSpec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_tokens": 0}, "max_tokens must be a positive integer"),
        ({"max_tokens": 65}, "max_tokens 65 is more than this model allows (64)"),
        ({"max_tokens": True}, "max_tokens must be a positive integer"),
        ({"temperature": 3}, "temperature must be a number from 0 to 2"),
        ({"top_p": 0}, "top_p must be a number in (0, 1]"),
        ({"top_k": 0}, "top_k must be a positive integer"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"stop": ["a"] * 5}, "at most 4 strings"),
        ({"stop": [""]}, "must not be empty"),
    ],
)
def test_bad_sampling_options_are_client_errors(options: dict, message: str) -> None:
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sampling_from(options, max_tokens_limit=64)


def test_sampling_defaults_and_nulls() -> None:
    sampling = sampling_from(
        {"max_tokens": None, "temperature": None, "stop": "\n"}, max_tokens_limit=64
    )
    assert (sampling.max_tokens, sampling.temperature, sampling.stop) == (16, 1.0, ("\n",))


@pytest.mark.parametrize(
    ("pieces", "stops", "emitted", "stopped"),
    [
        (["ab", "c\n", "d"], ("\n",), "abc", True),
        (["a", "EN", "D", "x"], ("END",), "a", True),  # a stop split across pieces
        (["a", "EN", "x"], ("END",), "aENx", False),  # a false start is released
        (["hello"], (), "hello", False),
    ],
)
def test_stop_strings_cut_the_text_and_hold_back_partial_matches(
    pieces: list[str], stops: tuple[str, ...], emitted: str, stopped: bool
) -> None:
    stop_filter = _StopFilter(stops)
    out, done = "", False
    for piece in pieces:
        text, done = stop_filter.feed(piece)
        out += text
        if done:
            break
    if not done:
        out += stop_filter.flush("")
    assert (out, done) == (emitted, stopped)


def test_streamed_pieces_make_the_whole_completion(tmp_path: Path) -> None:
    export = load_export(str(make_export(tmp_path / "gpt", gpt_spec(), steps=20)))
    sampling = sampling_from({"max_tokens": 20, "seed": 3, "top_k": 20}, max_tokens_limit=64)
    items = list(stream_completion(export.model, export.preprocessing, "The ", sampling))
    final = items[-1]
    assert isinstance(final, Completion) and final.completion_tokens == 20
    assert "".join(items[:-1]) == final.text and final.prompt_tokens == 4
    again = list(stream_completion(export.model, export.preprocessing, "The ", sampling))[-1]
    assert again.text == final.text  # the seed makes it repeatable
    greedy = sampling_from({"max_tokens": 5, "temperature": 0}, max_tokens_limit=64)
    first = list(stream_completion(export.model, export.preprocessing, "The ", greedy))[-1]
    ids = torch.tensor([list(b"The ")])
    expected = export.model.generate(ids, 5, temperature=0)[0, 4:].tolist()
    assert first.text == bytes(expected).decode("utf-8", errors="replace")


def test_api_keys_come_from_env_or_file_and_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# ops team\nfile-key\n\n")
    monkeypatch.setenv("MY_KEYS", "env-a, env-b")
    keys = read_api_keys(Auth(api_keys_env="MY_KEYS", api_keys_file=str(keys_file)))
    assert keys == ["env-a", "env-b", "file-key"]
    check = KeyCheck(keys)
    assert check.allows({"authorization": "Bearer env-b"})
    assert check.allows({"x-api-key": "file-key"})
    assert not check.allows({"authorization": "Bearer nope"})
    assert not check.allows({})
    assert KeyCheck([]).allows({})  # auth off
    monkeypatch.setenv("MY_KEYS", " , ")
    with pytest.raises(SpecError, match="MY_KEYS is not set or holds no keys"):
        read_api_keys(Auth(api_keys_env="MY_KEYS"))
    with pytest.raises(SpecError, match="cannot read the API key file"):
        read_api_keys(Auth(api_keys_file=str(tmp_path / "missing")))


def _spec(**models: object) -> ServeSpec:
    return ServeSpec.model_validate(
        {
            "name": "app",
            "storage": {"path": "/srv/runs"},
            "models": [
                {"name": "a", "model": {"path": "run-a"}, "replicas": 3, **models},
                {
                    "name": "a",
                    "version": "2",
                    "model": {"path": "/exports/a2"},
                    "replicas": {"min": 0, "max": 4},
                    "resources": {"cpus": 2, "gpus": 0.5},
                },
            ],
        }
    )


def test_deployment_options_and_the_serve_config_match_the_spec() -> None:
    spec = _spec()
    fixed, scaled = (deployment_options(e, spec) for e in spec.models)
    assert fixed["logging_config"] == {"enable_access_log": True}
    assert fixed["name"] == "a-v1" and fixed["num_replicas"] == 3
    assert scaled["autoscaling_config"]["min_replicas"] == 0
    assert scaled["autoscaling_config"]["initial_replicas"] == 1
    assert scaled["ray_actor_options"] == {"num_cpus": 2.0, "num_gpus": 0.5}
    config = serve_config(spec)
    app = config["applications"][0]
    assert app["import_path"] == "raylift.serving.app:build_app"
    paths = [m["model"]["path"] for m in app["args"]["spec"]["models"]]
    assert paths == ["/srv/runs/run-a/model", "/exports/a2"]  # resolved for the cluster
    assert [d["name"] for d in app["deployments"]] == ["ingress", "a-v1", "a-v2"]
    assert config["http_options"] == {"host": "127.0.0.1", "port": 8000}


def test_cli_refuses_a_missing_export_naming_the_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "serve",
            str(ROOT / "serve" / "digits.yaml"),
            "--set",
            f"storage.path={tmp_path}",
            "--dry-run",
        ],
    )
    assert result.exit_code == 2
    assert "models.0.model.path" in result.output and "train it first" in result.output


def test_cli_emits_a_serve_config_and_refuses_detach_without_a_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = make_export(tmp_path / "gpt", gpt_spec(), steps=5)
    out = tmp_path / "config.yaml"
    args = ["serve", str(ROOT / "serve" / "tinygpt.yaml"), "--set", f"models.0.model.path={export}"]
    result = CliRunner().invoke(cli, [*args, "--emit-config", str(out)])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(out.read_text())
    assert config["applications"][0]["args"]["spec"]["models"][0]["model"]["path"] == str(export)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    result = CliRunner().invoke(cli, [*args, "--detach"])
    assert result.exit_code == 2 and "error: --detach: needs a running cluster" in result.output


def _int8_hostile(model: torch.nn.Module, data: object) -> None:
    """A huge weight on an always-blank pixel: the float outputs do not change, but int8's
    per-row scale becomes so coarse that the layer's other weights round to zero."""
    blank = int((data.train_inputs == data.train_inputs[0]).all(dim=0).nonzero()[0])  # type: ignore[attr-defined]
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        first.weight[:, blank] = 1e4


def test_cli_refuses_an_int8_model_that_loses_too_much_accuracy(tmp_path: Path) -> None:
    from exports import digits_spec

    export = make_export(tmp_path / "digits", digits_spec(), steps=200, tamper=_int8_hostile)
    args = ["serve", str(ROOT / "serve" / "digits.yaml"), "--set", f"models.0.model.path={export}"]
    assert CliRunner().invoke(cli, [*args, "--dry-run"]).exit_code == 0  # fp32 is fine
    refused = CliRunner().invoke(cli, [*args, "--set", "models.0.quantize=int8", "--dry-run"])
    assert refused.exit_code == 2
    assert "model 'digits': int8 loses" in refused.output
    assert "more than max_accuracy_drop_pts 0.50" in refused.output
