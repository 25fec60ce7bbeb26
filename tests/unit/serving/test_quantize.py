"""int8 quantization and its accuracy gate, on real exports trained in-process (no mocks)."""

from __future__ import annotations

import dataclasses
import io
import re
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from raylift.data.preprocessing import preprocess
from raylift.errors import QuantizationRefused, RayliftError
from raylift.models.base import build_model
from raylift.models.exported import ExportedModel, load_export
from raylift.serving.quantize import (
    GateResult,
    check_int8,
    model_size_bytes,
    quantize_int8,
    sample_accuracy,
)
from raylift.testing.exports import digits_spec, gpt_spec, make_export


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_export(tmp_path_factory.mktemp("digits"), digits_spec("digits", [64]))


@pytest.fixture(scope="module")
def gpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_export(tmp_path_factory.mktemp("gpt"), gpt_spec("gpt"), steps=100)


@pytest.fixture
def digits(digits_dir: Path) -> ExportedModel:
    return load_export(str(digits_dir))  # a fresh model per test: some tests change it


def sample_logits(export: ExportedModel, model: nn.Module) -> torch.Tensor:
    x = preprocess(export.preprocessing, export.sample()["inputs"])
    with torch.inference_mode():
        return model(x)


def test_int8_copy_is_close_to_the_plain_model_which_stays_unchanged(
    digits: ExportedModel,
) -> None:
    before = {k: v.clone() for k, v in digits.model.state_dict().items()}
    modules = [type(m) for m in digits.model.modules()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the deprecation notices are silenced, nothing else
        int8 = quantize_int8(digits.model)

    assert int8 is not digits.model and not int8.training
    after = digits.model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert [type(m) for m in digits.model.modules()] == modules
    plain, quantized = sample_logits(digits, digits.model), sample_logits(digits, int8)
    agreement = (plain.argmax(-1) == quantized.argmax(-1)).float().mean()
    assert agreement >= 0.95
    assert (plain - quantized).abs().max() <= 0.05 * plain.abs().max()


def test_int8_state_dict_is_3_5x_smaller_and_loads_weights_only(digits: ExportedModel) -> None:
    # Size does not depend on training: an untrained [1024, 1024] MLP (1.1 M Linear weights).
    torch.manual_seed(0)
    plain = build_model("mlp", None, {"hidden_sizes": [1024, 1024]}, digits.info).eval()
    int8 = quantize_int8(plain)

    ratio = model_size_bytes(plain) / model_size_bytes(int8)
    assert ratio >= 3.5, f"int8 state_dict only {ratio:.2f}x smaller"

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's TypedStorage notice for quantized tensors
        torch.save(int8.state_dict(), buffer)
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)
    torch.manual_seed(1)  # different weights, replaced by the loaded ones
    other = quantize_int8(build_model("mlp", None, {"hidden_sizes": [1024, 1024]}, digits.info))
    other.load_state_dict(state)
    x = torch.randn(4, *digits.info.input_shape)
    with torch.inference_mode():
        assert torch.equal(other(x), int8(x))


def test_check_int8_passes_a_well_trained_digits_model(digits: ExportedModel) -> None:
    int8, result = check_int8(digits, 0.5, model_name="digits")

    assert isinstance(result, GateResult)
    assert result.plain_accuracy == sample_accuracy(digits) >= 0.95
    assert result.int8_accuracy == sample_accuracy(digits, int8)
    assert result.drop_pts == pytest.approx((result.plain_accuracy - result.int8_accuracy) * 100)
    assert result.drop_pts <= 0.5
    assert result.plain_bytes == model_size_bytes(digits.model) > result.int8_bytes > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.drop_pts = 0.0  # type: ignore[misc]


def test_check_int8_refuses_int8_hostile_weights(digits: ExportedModel) -> None:
    # A huge weight on an input that is always 0 (a blank corner pixel) leaves the float
    # model's outputs exactly as they were, but the int8 scale of every output row of that
    # layer becomes so coarse that all its other weights round to zero.
    x = preprocess(digits.preprocessing, digits.sample()["inputs"])
    blank = int((x == 0).all(dim=0).nonzero()[0])
    plain_accuracy = sample_accuracy(digits)
    first = next(m for m in digits.model.modules() if isinstance(m, nn.Linear))
    with torch.no_grad():
        first.weight[:, blank] = 1e4
    assert sample_accuracy(digits) == plain_accuracy

    with pytest.raises(QuantizationRefused) as refused:
        check_int8(digits, 0.5, model_name="digits")

    message = str(refused.value)
    assert isinstance(refused.value, RayliftError) and refused.value.exit_code == 2
    assert message.startswith("model 'digits': int8 loses ")
    drop = float(re.search(r"loses (\d+\.\d\d) accuracy points", message).group(1))  # type: ignore[union-attr]
    assert drop > 10
    assert f"({plain_accuracy:.2%} -> " in message
    assert "more than max_accuracy_drop_pts 0.50" in message
    assert "quantize: none" in message

    # The same model passes a threshold at (not below) its drop: refused only when larger.
    _, result = check_int8(digits, 100.0)
    assert result.drop_pts == pytest.approx(drop, abs=0.005)
    check_int8(digits, result.drop_pts)


def test_gpt_int8_runs_and_generates(gpt_dir: Path) -> None:
    export = load_export(str(gpt_dir))
    model = export.model
    sample = export.sample()
    per_token = (export.predict(sample["inputs"]) == sample["targets"]).float().mean()
    assert sample_accuracy(export) == float(per_token)

    int8, result = check_int8(export, 100.0, model_name="gpt")

    assert model.head.weight is model.tok_emb.weight  # the plain model's tied weights intact
    assert 0 < result.int8_accuracy <= 1 and abs(result.drop_pts) < 5
    agreement = sample_logits(export, model).argmax(-1) == sample_logits(export, int8).argmax(-1)
    assert agreement.float().mean() >= 0.9
    prompt = preprocess(export.preprocessing, "def ")
    out = int8.generate(prompt, max_new_tokens=8, temperature=0)
    assert out.shape == (1, prompt.shape[1] + 8)
    assert torch.equal(out[:, : prompt.shape[1]], prompt)
    assert int((out >= 0).all()) and int((out < export.info.vocab_size).all())
