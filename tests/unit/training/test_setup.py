"""Worker setup: the compiled model the loop calls."""

from __future__ import annotations

import shutil

import pytest
import torch

from raylift.data.base import DatasetInfo
from raylift.models import build_model


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on CPU needs a C++ compiler")
def test_train_compile_matches_eager_forward_and_backward() -> None:
    """``train.compile``: the model the loop calls is inductor-compiled and equal to eager."""
    from raylift.specs.job import TrainSpec
    from raylift.training.setup import compiled_model

    info = DatasetInfo(
        task="language_modeling", input_shape=(16,), vocab_size=256, input_dtype="int64"
    )
    torch.manual_seed(0)
    model = build_model("gpt", None, {"num_layers": 1, "num_heads": 2, "embed_dim": 32}, info)
    assert compiled_model(model, TrainSpec(compile=False)) is None
    compiled = compiled_model(model, TrainSpec(compile=True))
    assert compiled is not None and compiled is not model
    tokens = torch.randint(0, 256, (2, 16))
    compiled(tokens).float().pow(2).mean().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    eager = model(tokens)
    eager.float().pow(2).mean().backward()
    assert torch.allclose(compiled(tokens), eager, atol=1e-5)
    for got, want in zip(grads, (p.grad for p in model.parameters()), strict=True):
        assert torch.allclose(got, want, atol=1e-5)


def _resolved(model: dict, data: dict):  # type: ignore[no-untyped-def,type-arg]
    from raylift.specs import spec_from_dict
    from raylift.specs.resolve import resolve

    return resolve(spec_from_dict({"name": "check", "model": model, "data": data}))


def test_the_driver_checks_the_model_against_the_data_before_any_worker() -> None:
    """A model that cannot take the data is a SpecError on the driver (exit 2, nothing started)."""
    import pytest

    from raylift.data.base import load_dataset
    from raylift.errors import SpecError
    from raylift.training.setup import check_model

    text_spec = {"name": "text", "params": {"corpus": "licenses", "context_length": 32}}
    text = load_dataset("text", text_spec["params"], val_fraction=0.1, seed=0).info
    llama = {
        "model_type": "llama",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 64,
    }
    fits = _resolved({"name": "hf", "params": {"config": {**llama, "vocab_size": 256}}}, text_spec)
    check_model(fits, text)
    small = _resolved({"name": "hf", "params": {"config": {**llama, "vocab_size": 100}}}, text_spec)
    with pytest.raises(SpecError, match="vocab_size 100") as info:
        check_model(small, text)
    assert info.value.key == "model.params.config.vocab_size"
    short = {**llama, "vocab_size": 256, "max_position_embeddings": 16}
    with pytest.raises(SpecError, match="max_position_embeddings 16"):
        check_model(_resolved({"name": "hf", "params": {"config": short}}, text_spec), text)
    digits = load_dataset("digits", {}, val_fraction=0.2, seed=0).info
    check_model(_resolved({"name": "mlp"}, {"name": "digits"}), digits)  # built on meta
    with pytest.raises(SpecError):
        check_model(_resolved({"name": "gpt"}, {"name": "digits"}), digits)
