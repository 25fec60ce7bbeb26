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
